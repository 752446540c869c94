"""Fallbacks and teams (DESIGN §8): a personal configuration may fall back to a team configuration its owner
may use, skipped (no error) once the membership is gone; a team configuration falls back only within its team,
whatever its row says."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from gateway.store.changes import Change
from gateway.store.models import LLMConfiguration
from gateway.web.appkeys import CHANGES, SESSIONMAKER
from tests.factories import TestUser, add_member, make_team, make_team_configuration, make_user
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI, start_openai_upstream

from .conftest import MESSAGES, openai_config

TEAM_KEY = "sk-team-fallback-key-00000000000001"


@pytest.fixture
async def team_fake(aiohttp_server: Any) -> FakeOpenAI:
    return await start_openai_upstream(aiohttp_server, keys=(TEAM_KEY,), content="from the team")


@pytest.fixture
async def backup(aiohttp_server: Any) -> FakeOpenAI:
    return await start_openai_upstream(aiohttp_server, content="from the backup")


async def chat(client: TestClient, user: TestUser, **headers: str) -> tuple[int, dict[str, str]]:
    resp = await client.post("/v1/chat/completions", json={"model": "x", "messages": MESSAGES},
                             headers={**user.headers, **headers})
    await resp.read()
    return resp.status, dict(resp.headers)


async def team_config(client: TestClient, owner: TestUser, team: dict[str, Any], fake: FakeOpenAI, **fields: Any
                      ) -> dict[str, Any]:
    values: dict[str, Any] = {"provider": "custom", "model": "m", "base_url": fake.url, "api_key": TEAM_KEY}
    values.update(fields)
    return await make_team_configuration(client, owner, team, **values)


async def test_personal_falls_back_to_a_team_configuration_until_membership_ends(
        client: TestClient, fake: FakeOpenAI, team_fake: FakeOpenAI) -> None:
    owner, member = await make_user(client), await make_user(client)
    team = await make_team(client, owner, "acme")
    await add_member(client, owner, team, member)
    shared = await team_config(client, owner, team, team_fake, name="shared")
    primary = await openai_config(client, member, fake, name="primary", fallback_ids=[shared["id"]])
    fake.script([500])
    status, headers = await chat(client, member)
    assert status == 200
    assert headers["X-LLM-Configuration-Id"] == shared["id"] and headers["X-LLM-Gateway-Attempts"] == "2"
    assert team_fake.last_request.api_key == TEAM_KEY

    resp = await client.delete(f"/api/teams/{team['id']}/members/{member.id}", headers=owner.headers)
    assert resp.status == 204, await resp.text()
    fake.script([500])
    status, headers = await chat(client, member)
    # The fallback is skipped, not an error of its own: the answer is the primary's.
    assert status == 500
    assert headers["X-LLM-Configuration-Id"] == primary["id"] and headers["X-LLM-Gateway-Attempts"] == "1"
    assert len(team_fake.requests) == 1
    fake.script([])
    status, headers = await chat(client, member)
    assert status == 200 and headers["X-LLM-Configuration-Id"] == primary["id"]


async def test_team_configuration_falls_back_only_within_its_team(
        client: TestClient, fake: FakeOpenAI, team_fake: FakeOpenAI, backup: FakeOpenAI) -> None:
    owner, member = await make_user(client), await make_user(client)
    team = await make_team(client, owner, "acme")
    other_team = await make_team(client, owner, "other")
    await add_member(client, owner, team, member)
    failing = await team_config(client, owner, team, fake, name="failing", api_key=f"sk-team-{uuid.uuid4().hex}")
    same_team = await team_config(client, owner, team, team_fake, name="same-team")
    other = await team_config(client, owner, other_team, backup, name="other", api_key=DEFAULT_OPENAI_KEY)
    personal = await openai_config(client, owner, backup, name="personal")
    # A row that says otherwise (written behind the API's back): the owner may use all three, yet only the
    # same team's is tried.
    async with client.server.app[SESSIONMAKER]() as session:
        await session.execute(update(LLMConfiguration).where(LLMConfiguration.id == uuid.UUID(failing["id"]))
                              .values(fallback_ids=[personal["id"], other["id"], same_team["id"]]))
        await client.server.app[CHANGES].commit(session, Change("all"))
    for user in (owner, member):
        status, headers = await chat(client, user, **{"X-LLM-Configuration": "acme/failing"})
        assert status == 200
        assert headers["X-LLM-Configuration-Id"] == same_team["id"] and headers["X-LLM-Gateway-Attempts"] == "2"
    assert backup.requests == []
    assert len(fake.requests) == 2  # the failing key is refused by the fake: 401, a failover status


async def test_fallbacks_to_another_teams_configuration_are_refused_like_unknown_ids(
        client: TestClient, fake: FakeOpenAI, team_fake: FakeOpenAI) -> None:
    owner, member = await make_user(client), await make_user(client)
    team = await make_team(client, owner, "acme")
    await add_member(client, owner, team, member)
    other_team = await make_team(client, owner, "other")  # the member is not in it
    mine = await team_config(client, owner, team, team_fake, name="mine")
    theirs = await team_config(client, owner, other_team, team_fake, name="theirs")
    personal = await openai_config(client, member, fake, name="personal")
    answers = []
    for fallback in (theirs["id"], str(uuid.uuid4())):
        resp = await client.patch(f"/api/llm-configurations/{personal['id']}", json={"fallback_ids": [fallback]},
                                  headers=member.headers)
        answers.append((resp.status, (await resp.json())["error"]))
    assert answers[0] == answers[1] and answers[0][0] == 422 and answers[0][1]["param"] == "fallback_ids"
    resp = await client.patch(f"/api/llm-configurations/{personal['id']}", json={"fallback_ids": [mine["id"]]},
                              headers=member.headers)
    assert resp.status == 200 and (await resp.json())["fallback_ids"] == [mine["id"]]
    # A team configuration's fallbacks: its own team's only (another team's is a 404, as an unknown id).
    resp = await client.patch(f"/api/llm-configurations/{mine['id']}", json={"fallback_ids": [theirs["id"]]},
                              headers=owner.headers)
    assert resp.status == 404, await resp.text()
