"""Users leaving, on SQLite and PostgreSQL: a team never loses its last owner (deleting one is refused with 409
naming the teams, or hands ownership to the longest-standing member, as the operator chooses), a team's usage
and audit outlive the members who made them (every removal path: API delete, CLI delete, disable; a last owner
and a member), and operators can manage any team through /api/admin/teams."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.admin.test_configurations_api import error_of
from tests.cli.test_cli import cli
from tests.factories import ApiUser, add_member, make_team, make_team_configuration, make_user
from tests.fakes.openai_upstream import FakeOpenAI, start_openai_upstream

TEAM_KEY = "sk-team-departure-key-000000000001"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def fake(aiohttp_server: Any) -> FakeOpenAI:
    return await start_openai_upstream(aiohttp_server, keys=(TEAM_KEY,))


class Team:
    """An owner, two members (joined in this order), a team with a configuration each of them used."""

    def __init__(self, owner: ApiUser, first: ApiUser, second: ApiUser, team: dict[str, Any]) -> None:
        self.owner, self.first, self.second, self.team = owner, first, second, team
        self.path = f"/api/teams/{team['id']}"


async def _team(client: TestClient, fake: FakeOpenAI) -> Team:
    owner, first, second = [await make_user(client) for _ in range(3)]
    team = await make_team(client, owner, "t-" + uuid.uuid4().hex[:6])
    await add_member(client, owner, team, first)
    await add_member(client, owner, team, second)
    await make_team_configuration(client, owner, team, name="shared", provider="custom", model="m",
                                  base_url=fake.url, api_key=TEAM_KEY)
    made = Team(owner, first, second, team)
    for user in (owner, first, second):
        resp = await client.post("/v1/chat/completions", json={"model": f"{team['name']}/shared",
                                                               "messages": MESSAGES}, headers=user.headers)
        assert resp.status == 200, await resp.text()
    deadline = time.monotonic() + 30
    while (await _usage(client, owner, made))["totals"]["requests"] < 3:
        assert time.monotonic() < deadline, "the usage writer never wrote the team's usage"
        await asyncio.sleep(0.05)
    return made


async def _usage(client: TestClient, viewer: ApiUser, team: Team) -> dict[str, Any]:
    resp = await client.get(f"{team.path}/usage", params={"group_by": "member"}, headers=viewer.headers)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def _audit(client: TestClient, viewer: ApiUser, team: Team) -> list[dict[str, Any]]:
    resp = await client.get(f"{team.path}/audit-events", headers=viewer.headers)
    assert resp.status == 200, await resp.text()
    items: list[dict[str, Any]] = (await resp.json())["items"]
    return items


async def _roles(client: TestClient, viewer: ApiUser, team: Team) -> dict[str, str]:
    listing = await (await client.get(f"{team.path}/members", headers=viewer.headers)).json()
    return {m["name"]: m["role"] for m in listing["items"]}


def _spend(usage: dict[str, Any]) -> tuple[Any, ...]:
    """The team's totals, and each member's requests by name (a deleted member keeps its name)."""
    totals = usage["totals"]
    return (totals["requests"], totals["total_tokens"], totals["cost_usd"],
            sorted((g["member_name"], g["requests"]) for g in usage["groups"]))


async def test_deleting_a_last_owner_is_refused_by_default_naming_its_teams(
        client: TestClient, admin_headers: dict[str, str], fake: FakeOpenAI) -> None:
    made = await _team(client, fake)
    other = await make_team(client, made.owner, "second-" + uuid.uuid4().hex[:6])
    audit_before = await _audit(client, made.owner, made)
    for query in ("", "?on_last_owner=refuse"):
        resp = await client.delete(f"/api/admin/users/{made.owner.id}{query}", headers=admin_headers)
        error = await error_of(resp, 409)
        assert error["code"] == "last_owner"
        assert f"'{made.team['name']}'" in error["message"] and f"'{other['name']}'" in error["message"]
    # Nothing changed: the owner still acts, the team, its members, usage and audit are as they were.
    assert (await client.get(made.path, headers=made.owner.headers)).status == 200
    assert await _audit(client, made.owner, made) == audit_before
    resp = await client.delete(f"/api/admin/users/{made.owner.id}?on_last_owner=keep", headers=admin_headers)
    assert (await error_of(resp, 400))["param"] == "on_last_owner"


async def test_transfer_hands_the_team_to_its_longest_standing_member_and_keeps_its_history(
        client: TestClient, admin_headers: dict[str, str], fake: FakeOpenAI) -> None:
    made = await _team(client, fake)
    spend_before = _spend(await _usage(client, made.owner, made))
    audit_before = await _audit(client, made.owner, made)
    resp = await client.delete(f"/api/admin/users/{made.owner.id}?on_last_owner=transfer", headers=admin_headers)
    assert resp.status == 204
    assert await _roles(client, made.first, made) == {made.first.name: "owner", made.second.name: "member"}
    # The new owner manages the team: its usage (the deleted owner's spend kept, by name), audit, key rotation.
    assert _spend(await _usage(client, made.first, made)) == spend_before
    audit = await _audit(client, made.first, made)
    assert audit[0]["action"] == "team.owner_transfer"
    assert audit[0]["details"] == {"from": made.owner.id, "to": made.first.id}
    assert audit[1:] == audit_before
    assert (await client.post(f"{made.path}/rotate-key", headers=made.first.headers)).status == 200


async def test_transfer_without_another_member_is_refused(client: TestClient, admin_headers: dict[str, str]) -> None:
    owner = await make_user(client)
    team = await make_team(client, owner, "alone-" + uuid.uuid4().hex[:6])
    resp = await client.delete(f"/api/admin/users/{owner.id}?on_last_owner=transfer", headers=admin_headers)
    error = await error_of(resp, 409)
    assert error["code"] == "last_owner" and f"'{team['name']}'" in error["message"]
    assert (await client.get(f"/api/teams/{team['id']}", headers=owner.headers)).status == 200


async def test_deleting_a_member_keeps_the_team_usage_and_audit(
        client: TestClient, admin_headers: dict[str, str], fake: FakeOpenAI) -> None:
    made = await _team(client, fake)
    spend_before = _spend(await _usage(client, made.owner, made))
    audit_before = await _audit(client, made.owner, made)
    assert (await client.delete(f"/api/admin/users/{made.second.id}", headers=admin_headers)).status == 204
    assert await _roles(client, made.owner, made) == {made.owner.name: "owner", made.first.name: "member"}
    assert _spend(await _usage(client, made.owner, made)) == spend_before
    assert await _audit(client, made.owner, made) == audit_before


async def test_disabling_an_owner_or_a_member_keeps_the_team_as_it_was(
        client: TestClient, admin_headers: dict[str, str], fake: FakeOpenAI) -> None:
    made = await _team(client, fake)
    roles, spend = await _roles(client, made.owner, made), _spend(await _usage(client, made.owner, made))
    audit = await _audit(client, made.owner, made)
    for user in (made.second, made.owner):
        assert (await client.post(f"/api/admin/users/{user.id}/disable", headers=admin_headers)).status == 200
    # The disabled owner is still the owner (an operator can enable it again, or manage the team meanwhile).
    assert await _roles(client, made.first, made) == roles
    assert (await client.post(f"/api/admin/users/{made.owner.id}/enable", headers=admin_headers)).status == 200
    assert _spend(await _usage(client, made.owner, made)) == spend
    assert await _audit(client, made.owner, made) == audit


async def test_cli_delete_refuses_a_last_owner_and_transfers_on_request(
        client: TestClient, fake: FakeOpenAI, database_url: str, key_ring: str, tmp_path: Path) -> None:
    made = await _team(client, fake)
    spend_before = _spend(await _usage(client, made.owner, made))
    audit_before = await _audit(client, made.owner, made)

    def run(*args: str) -> Any:
        return cli(*args, cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=database_url, LLM_GATEWAY_ENCRYPTION_KEYS=key_ring)

    refused = run("users", "delete", made.owner.name)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and f"'{made.team['name']}'" in lines[0], refused.stderr
    assert run("users", "delete", made.second.name).returncode == 0  # a member
    done = run("users", "delete", made.owner.name, "--on-last-owner", "transfer")
    assert done.returncode == 0, done.stderr
    assert await _roles(client, made.first, made) == {made.first.name: "owner"}
    assert _spend(await _usage(client, made.first, made)) == spend_before
    audit = await _audit(client, made.first, made)
    assert [e["action"] for e in audit[:1]] == ["team.owner_transfer"] and audit[1:] == audit_before


async def test_operators_manage_any_team(client: TestClient, admin_headers: dict[str, str], fake: FakeOpenAI) -> None:
    made = await _team(client, fake)
    listing = await (await client.get("/api/admin/teams", headers=admin_headers)).json()
    (row,) = [t for t in listing["items"] if t["id"] == made.team["id"]]
    assert row["members"] == 3 and row["owners"] == [made.owner.name]
    base = f"/api/admin/teams/{made.team['id']}"
    resp = await client.patch(f"{base}/members/{made.first.id}", json={"role": "owner"}, headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["role"] == "owner"
    resp = await client.patch(f"{base}/members/{made.owner.id}", json={"role": "member"}, headers=admin_headers)
    assert resp.status == 200
    resp = await client.patch(f"{base}/members/{made.first.id}", json={"role": "member"}, headers=admin_headers)
    assert (await error_of(resp, 409))["code"] == "last_owner"  # the team rules hold for operators too
    assert (await client.delete(f"{base}/members/{made.second.id}", headers=admin_headers)).status == 204
    new_name = made.team["name"] + "-ops"
    resp = await client.patch(base, json={"name": new_name}, headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["name"] == new_name
    resp = await client.post(f"{base}/rotate-key", headers=admin_headers)
    assert resp.status == 200
    actors = {e["action"]: e["actor"] for e in await _audit(client, made.first, made)}
    assert actors["team.rename"] == actors["team.rotate_key"] == "operator"
    assert (await client.delete(base, headers=admin_headers)).status == 204
    assert (await client.get(made.path, headers=made.first.headers)).status == 404
    for method, path in (("PATCH", base), ("DELETE", base), ("POST", f"{base}/rotate-key")):
        resp = await client.request(method, path, json={"name": "x"}, headers=admin_headers)
        assert resp.status == 404, (method, path)


async def test_two_owners_deleted_at_once_never_leave_a_team_without_one(
        client: TestClient, admin_headers: dict[str, str]) -> None:
    """Each deletion counted two owners before either wrote, so both went through and the team was left with
    members and no owner (beyond every owner's route, and the operator's too: 404)."""
    first, second, member = [await make_user(client) for _ in range(3)]
    team = await make_team(client, first, "t-" + uuid.uuid4().hex[:6])
    await add_member(client, first, team, second, role="owner")
    await add_member(client, first, team, member)
    answers = await asyncio.gather(*(client.delete(f"/api/admin/users/{user.id}", headers=admin_headers)
                                     for user in (first, second)))
    assert sorted(resp.status for resp in answers) == [204, 409]
    listing = await (await client.get("/api/admin/teams", headers=admin_headers)).json()
    (found,) = [t for t in listing["items"] if t["id"] == team["id"]]
    assert len(found["owners"]) == 1
