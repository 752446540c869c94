"""Usage of team configurations: rows carry the team; GET /api/teams/{id}/usage shows owners every member's
use (by member, configuration or day: the team's cost per day), members their own, non-members nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.configurations.model_catalog import model_data
from gateway.proxy.usage import cost_usd
from gateway.store.models import UsageRecord
from gateway.web.appkeys import SESSIONMAKER
from tests.factories import TestUser, add_member, make_team, make_team_configuration, make_user
from tests.fakes.openai_upstream import FakeOpenAI, start_openai_upstream

from .conftest import MESSAGES, openai_config

TEAM_KEY = "sk-team-usage-key-000000000000001"
PROMPT, COMPLETION = 13, 5


@pytest.fixture
async def team_fake(aiohttp_server: Any) -> FakeOpenAI:
    return await start_openai_upstream(aiohttp_server, keys=(TEAM_KEY,), prompt_tokens=PROMPT,
                                       completion_tokens=COMPLETION)


async def chat(client: TestClient, user: TestUser, model: str) -> None:
    resp = await client.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES},
                             headers=user.headers)
    assert resp.status == 200, await resp.text()


async def rows_written(client: TestClient, n: int) -> list[UsageRecord]:
    deadline = time.monotonic() + 30  # generous: a loaded CI flushes late, a healthy one returns at once
    while True:
        async with client.server.app[SESSIONMAKER]() as session:
            rows = list((await session.execute(select(UsageRecord))).scalars())
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def report(client: TestClient, user: TestUser, team: dict[str, Any], status: int = 200, **params: str
                 ) -> dict[str, Any]:
    resp = await client.get(f"/api/teams/{team['id']}/usage", headers=user.headers, params=params)
    assert resp.status == status, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def test_team_usage_by_role(client: TestClient, fake: FakeOpenAI, team_fake: FakeOpenAI) -> None:
    owner = await make_user(client, "owner-" + uuid.uuid4().hex[:6])
    member = await make_user(client, "member-" + uuid.uuid4().hex[:6])
    stranger = await make_user(client)
    team = await make_team(client, owner, "usage-team")
    await add_member(client, owner, team, member)
    base = {"provider": "custom", "base_url": team_fake.url, "api_key": TEAM_KEY, "model": "gpt-4o-mini"}
    first = await make_team_configuration(client, owner, team, name="first", **base)
    second = await make_team_configuration(client, owner, team, name="second", **base)
    await openai_config(client, member, fake, name="mine")
    await chat(client, owner, "usage-team/first")
    await chat(client, member, "usage-team/first")
    await chat(client, member, "usage-team/second")
    await chat(client, member, "mine")  # the member's own: not the team's usage

    rows = await rows_written(client, 4)
    assert len(rows) == 4
    team_id = uuid.UUID(team["id"])
    assert sorted((str(r.user_id), str(r.configuration_id)) for r in rows if r.team_id == team_id) == sorted(
        [(owner.id, first["id"]), (member.id, first["id"]), (member.id, second["id"])])
    assert [r.team_id for r in rows if r.configuration_id not in (uuid.UUID(first["id"]), uuid.UUID(second["id"]))
            ] == [None]

    per_request = cost_usd(model_data(), litellm_provider="custom_openai", model="gpt-4o-mini",
                           prompt_tokens=PROMPT, completion_tokens=COMPLETION)
    assert per_request > 0
    everything = await report(client, owner, team, group_by="member")
    assert everything["scope"] == "team" and everything["totals"]["requests"] == 3
    assert everything["totals"]["cost_usd"] == pytest.approx(3 * per_request)
    by_member = {g["member_name"]: g["requests"] for g in everything["groups"]}
    assert by_member == {owner.name: 1, member.name: 2}
    by_configuration = await report(client, owner, team, group_by="configuration")
    assert {g["configuration_name"]: g["requests"] for g in by_configuration["groups"]} == {"first": 2, "second": 1}
    by_day = await report(client, owner, team, group_by="day")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert [(g["key"], g["requests"]) for g in by_day["groups"]] == [(today, 3)]
    assert by_day["groups"][0]["cost_usd"] == pytest.approx(3 * per_request)  # the team's cost per day

    own = await report(client, member, team, group_by="member")
    assert own["scope"] == "own" and own["totals"]["requests"] == 2
    assert [g["member_name"] for g in own["groups"]] == [member.name]

    for user, team_id_text in ((stranger, team["id"]), (owner, str(uuid.uuid4()))):
        resp = await client.get(f"/api/teams/{team_id_text}/usage", headers=user.headers)
        assert resp.status == 404, await resp.text()
    resp = await client.get(f"/api/teams/{team['id']}/usage", headers=owner.headers, params={"group_by": "model"})
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "group_by"
