"""A `<team>/<name>` label never silently starts meaning another team (DESIGN §8), on SQLite and PostgreSQL.

The takeover this stops: a team is renamed or deleted, someone else creates a team with the freed name, invites
its former members and adds a configuration with the same name, and the members' unchanged clients send their
prompts to the newcomer's upstream. A name a team gives up is held for its members then: no other team may take
it (409 team_name_reserved) and their old label answers 404 team_label_gone, by `model` and by header."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.admin.test_configurations_api import error_of
from tests.factories import ApiUser, add_member, make_team, make_team_configuration, make_user
from tests.fakes.openai_upstream import FakeOpenAI, start_openai_upstream

TEAM_KEY = "sk-team-label-key-00000000000000001"
NEWCOMER_KEY = "sk-newcomer-label-key-000000000002"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def upstreams(aiohttp_server: Any) -> tuple[FakeOpenAI, FakeOpenAI]:
    """The first team's upstream and the newcomer's."""
    return (await start_openai_upstream(aiohttp_server, keys=(TEAM_KEY,), content="first team"),
            await start_openai_upstream(aiohttp_server, keys=(NEWCOMER_KEY,), content="newcomer"))


async def _setup(client: TestClient, fake: FakeOpenAI) -> tuple[ApiUser, ApiUser, dict[str, Any]]:
    owner, member = await make_user(client), await make_user(client)
    team = await make_team(client, owner, "acme-" + uuid.uuid4().hex[:6])
    await add_member(client, owner, team, member)
    await make_team_configuration(client, owner, team, name="shared", provider="custom", model="m",
                                  base_url=fake.url, api_key=TEAM_KEY)
    return owner, member, team


async def _ask(client: TestClient, user: ApiUser, label: str) -> list[tuple[int, dict[str, Any]]]:
    """The answers to `label` sent as `model` and as the header."""
    answers = []
    for body, headers in (({"model": label}, {}), ({"model": "x"}, {"X-LLM-Configuration": label})):
        resp = await client.post("/v1/chat/completions", json={**body, "messages": MESSAGES},
                                 headers={**user.headers, **headers})
        answers.append((resp.status, await resp.json()))
    return answers


async def _takeover(client: TestClient, name: str, member: ApiUser, fake: FakeOpenAI) -> int:
    """A newcomer tries to create a team with the freed name; when it can, it invites the member and adds a
    configuration with the same name. The status of the creation."""
    newcomer = await make_user(client)
    resp = await client.post("/api/teams", json={"name": name}, headers=newcomer.headers)
    if resp.status == 201:
        team = await resp.json()
        await add_member(client, newcomer, team, member)
        await make_team_configuration(client, newcomer, team, name="shared", provider="custom", model="m",
                                      base_url=fake.url, api_key=NEWCOMER_KEY)
    else:
        assert (await error_of(resp, 409))["code"] == "team_name_reserved"
    return resp.status


def _gone(answers: list[tuple[int, dict[str, Any]]], label: str) -> None:
    for (status, body), param in zip(answers, ("model", "X-LLM-Configuration"), strict=True):
        assert status == 404, body
        error = body["error"]
        assert error["code"] == "team_label_gone" and error["param"] == param and label in error["message"]


async def test_rename_then_recreate_never_serves_the_newcomer(
        client: TestClient, upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    first, newcomers = upstreams
    owner, member, team = await _setup(client, first)
    old = f"{team['name']}/shared"
    assert [s for s, _ in await _ask(client, member, old)] == [200, 200]
    resp = await client.patch(f"/api/teams/{team['id']}", json={"name": team["name"] + "-new"}, headers=owner.headers)
    assert resp.status == 200
    assert await _takeover(client, team["name"], member, newcomers) == 409
    _gone(await _ask(client, member, old), old)
    assert newcomers.requests == []
    # The new label serves the same team; the team may take its old name back, and the label works again.
    assert [s for s, _ in await _ask(client, member, f"{team['name']}-new/shared")] == [200, 200]
    resp = await client.patch(f"/api/teams/{team['id']}", json={"name": team["name"]}, headers=owner.headers)
    assert resp.status == 200
    assert [s for s, _ in await _ask(client, member, old)] == [200, 200]
    assert first.last_request.api_key == TEAM_KEY


async def test_delete_then_recreate_never_serves_the_newcomer(
        client: TestClient, upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    first, newcomers = upstreams
    owner, member, team = await _setup(client, first)
    old = f"{team['name']}/shared"
    assert (await client.delete(f"/api/teams/{team['id']}", headers=owner.headers)).status == 204
    assert await _takeover(client, team["name"], member, newcomers) == 409
    for user in (member, owner):
        _gone(await _ask(client, user, old), old)
    assert newcomers.requests == []
    # A user who never was a member is not held to it: for them the label is simply unknown.
    stranger = await make_user(client)
    (by_model, by_header) = await _ask(client, stranger, old)
    assert by_header[0] == 404 and by_header[1]["error"]["code"] == "configuration_not_found"
    assert by_model[0] == 400  # no default: the usual "nothing selected"


async def test_held_name_is_freed_when_no_former_member_is_left(
        client: TestClient, admin_headers: dict[str, str], upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    first, _ = upstreams
    owner, member, team = await _setup(client, first)
    assert (await client.delete(f"/api/teams/{team['id']}", headers=owner.headers)).status == 204
    for user in (owner, member):
        assert (await client.delete(f"/api/admin/users/{user.id}", headers=admin_headers)).status == 204
    newcomer = await make_user(client)
    resp = await client.post("/api/teams", json={"name": team["name"]}, headers=newcomer.headers)
    assert resp.status == 201


async def test_a_name_given_up_at_the_moment_another_team_asks_for_it_stays_held(client: TestClient) -> None:
    """A rename and a newcomer's creation of the old name at once: the newcomer never gets the name (it read no
    hold before the rename committed, then its insert waited on the renamed row and went through)."""
    owner, member, newcomer = await make_user(client), await make_user(client), await make_user(client)
    for _ in range(10):
        team = await make_team(client, owner, "race-" + uuid.uuid4().hex[:6])
        await add_member(client, owner, team, member)
        renamed, created = await asyncio.gather(
            client.patch(f"/api/teams/{team['id']}", json={"name": team["name"] + "-new"}, headers=owner.headers),
            client.post("/api/teams", json={"name": team["name"]}, headers=newcomer.headers))
        assert renamed.status == 200, await renamed.text()
        # Before the rename the name is the team's own, after it the former members': 409 either way.
        assert (await error_of(created, 409))["code"] in {"duplicate_team_name", "team_name_reserved"}
