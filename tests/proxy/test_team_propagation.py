"""Team changes reach every gateway process within a second: two `gateway serve` processes on one database
(PostgreSQL: LISTEN/NOTIFY; SQLite: the change log), a member removed or a team deleted through process A is
refused by process B, which had the team's configuration cached; an invitation accepted through A is served by
B; a team renamed through A makes its old label a 404 on B."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.fakes.openai_upstream import FakeOpenAI, start_openai_upstream
from tests.leakwatch import watched

from .conftest import MESSAGES
from .test_propagation import running_gateways

TEAM_KEY = "sk-team-propagation-0000000000001"
# DESIGN §8: every process stops serving a removed member at once; "at once" across processes is this bound.
WITHIN_S = 1.0


@pytest.fixture
async def upstream(aiohttp_server: Any) -> FakeOpenAI:
    return await start_openai_upstream(aiohttp_server, keys=(TEAM_KEY,))


@pytest.fixture
async def two_gateways(database_url: str, key_ring: str, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """Two gateway processes on the same database (either backend): their base URLs."""
    async with running_gateways(database_url, key_ring, tmp_path) as ports:
        yield f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"


class Api:
    """JSON calls to one gateway process."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url

    async def call(self, method: str, path: str, token: str, body: dict[str, Any] | None = None,
                   status: int = 200, **headers: str) -> Any:
        async with self.http.request(method, self.url + path, json=body,
                                     headers={"Authorization": f"Bearer {token}", **headers}) as resp:
            assert resp.status == status, await resp.text()
            return await resp.json() if resp.status != 204 else None


async def team_with_member(a: Api, upstream: FakeOpenAI) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any],
                                                                    dict[str, Any]]:
    """Through process A: an owner, a member, their team and its configuration."""
    owner = await a.call("POST", "/api/admin/users", ADMIN_TOKEN, {"name": "owner"}, status=201)
    member = await a.call("POST", "/api/admin/users", ADMIN_TOKEN, {"name": "member"}, status=201)
    team = await a.call("POST", "/api/teams", owner["token"], {"name": "acme"}, status=201)
    await join(a, owner, member, team)
    watched(TEAM_KEY, "tests/proxy/test_team_propagation.py")
    config = await a.call("POST", f"/api/teams/{team['id']}/llm-configurations", owner["token"],
                          {"name": "shared", "provider": "custom", "model": "m", "api_key": TEAM_KEY,
                           "base_url": upstream.url}, status=201)
    return owner, member, team, config


async def join(a: Api, owner: dict[str, Any], member: dict[str, Any], team: dict[str, Any]) -> None:
    """Through process A: the owner invites the member, who accepts."""
    await a.call("POST", f"/api/teams/{team['id']}/members", owner["token"], {"user": member["name"]}, status=202)
    (invitation,) = (await a.call("GET", "/api/invitations", member["token"]))["items"]
    await a.call("POST", f"/api/invitations/{invitation['id']}/accept", member["token"])


async def served_within(b: Api, token: str, label: str, limit_s: float) -> float:
    """Seconds until process B serves `label` to the token's user (404 until then); fails past `limit_s`."""
    started = time.monotonic()
    while True:
        async with b.http.post(b.url + "/v1/chat/completions", json={"model": "x", "messages": MESSAGES},
                               headers={"Authorization": f"Bearer {token}", "X-LLM-Configuration": label}) as resp:
            elapsed = time.monotonic() - started
            if resp.status == 200:
                return elapsed
            assert resp.status == 404, await resp.text()
        assert elapsed < limit_s, f"process B still refused {label} after {elapsed:.2f} s"


async def refused_within(b: Api, token: str, limit_s: float) -> float:
    """Seconds until process B refuses the member's use of the team configuration; fails past `limit_s`."""
    started = time.monotonic()
    while True:
        async with b.http.post(b.url + "/v1/chat/completions", json={"model": "x", "messages": MESSAGES},
                               headers={"Authorization": f"Bearer {token}", "X-LLM-Configuration": "acme/shared"}
                               ) as resp:
            elapsed = time.monotonic() - started
            if resp.status == 404:
                return elapsed
            assert resp.status == 200, await resp.text()
        assert elapsed < limit_s, f"process B still served the team configuration after {elapsed:.2f} s"


async def test_member_removed_in_one_process_is_refused_by_the_other(
        two_gateways: tuple[str, str], upstream: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as http:
        a, b = Api(http, two_gateways[0]), Api(http, two_gateways[1])
        owner, member, team, _ = await team_with_member(a, upstream)
        body = {"model": "acme/shared", "messages": MESSAGES}
        await b.call("POST", "/v1/chat/completions", member["token"], body)  # B caches the member's set
        assert upstream.last_request.api_key == TEAM_KEY
        await a.call("DELETE", f"/api/teams/{team['id']}/members/{member['id']}", owner["token"], status=204)
        await refused_within(b, member["token"], WITHIN_S)
        await b.call("POST", "/v1/chat/completions", owner["token"], body)  # the owner still may


async def test_team_deleted_in_one_process_is_refused_by_the_other(
        two_gateways: tuple[str, str], upstream: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as http:
        a, b = Api(http, two_gateways[0]), Api(http, two_gateways[1])
        owner, member, team, _ = await team_with_member(a, upstream)
        body = {"model": "acme/shared", "messages": MESSAGES}
        for user in (owner, member):
            await b.call("POST", "/v1/chat/completions", user["token"], body)
        await a.call("DELETE", f"/api/teams/{team['id']}", owner["token"], status=204)
        for user in (member, owner):
            await refused_within(b, user["token"], WITHIN_S)


async def test_invitation_accepted_in_one_process_is_served_by_the_other(
        two_gateways: tuple[str, str], upstream: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as http:
        a, b = Api(http, two_gateways[0]), Api(http, two_gateways[1])
        owner, _, team, _ = await team_with_member(a, upstream)
        newcomer = await a.call("POST", "/api/admin/users", ADMIN_TOKEN, {"name": "newcomer"}, status=201)
        headers = {"X-LLM-Configuration": "acme/shared"}
        # B caches the newcomer's set (no team yet); a pending invitation changes nothing.
        await b.call("POST", "/v1/chat/completions", newcomer["token"], {"model": "x", "messages": MESSAGES},
                     status=404, **headers)
        await a.call("POST", f"/api/teams/{team['id']}/members", owner["token"], {"user": "newcomer"}, status=202)
        await b.call("POST", "/v1/chat/completions", newcomer["token"], {"model": "x", "messages": MESSAGES},
                     status=404, **headers)
        (invitation,) = (await a.call("GET", "/api/invitations", newcomer["token"]))["items"]
        await a.call("POST", f"/api/invitations/{invitation['id']}/accept", newcomer["token"])
        await served_within(b, newcomer["token"], "acme/shared", WITHIN_S)


async def test_team_renamed_in_one_process_makes_the_old_label_404_on_the_other(
        two_gateways: tuple[str, str], upstream: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as http:
        a, b = Api(http, two_gateways[0]), Api(http, two_gateways[1])
        owner, member, team, _ = await team_with_member(a, upstream)
        await b.call("POST", "/v1/chat/completions", member["token"], {"model": "acme/shared", "messages": MESSAGES})
        await a.call("PATCH", f"/api/teams/{team['id']}", owner["token"], {"name": "acme2"})
        await served_within(b, member["token"], "acme2/shared", WITHIN_S)
        error = await b.call("POST", "/v1/chat/completions", member["token"],
                             {"model": "acme/shared", "messages": MESSAGES}, status=404)
        assert error["error"]["code"] == "team_label_gone" and error["error"]["param"] == "model"
