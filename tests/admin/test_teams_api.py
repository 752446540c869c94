"""Teams and members through the admin API, on SQLite and PostgreSQL: the roles matrix (owner, member,
non-member on every route), the last-owner rule, 404s and invitations that reveal nothing, 409 duplicates, audit
events with the team, and a change notification for every affected user. Members join by invitation
(tests/factories.add_member invites and accepts through the API)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.store.changes import Change
from gateway.web.appkeys import CHANGES
from tests.admin.test_configurations_api import error_of
from tests.factories import ApiUser, add_member, make_team, make_user

TEAMS = "/api/teams"


async def _setup(client: TestClient) -> tuple[ApiUser, ApiUser, ApiUser, dict[str, Any]]:
    owner, member, outsider = [await make_user(client) for _ in range(3)]
    team = await make_team(client, owner)
    await add_member(client, owner, team, member)
    return owner, member, outsider, team


async def test_create_list_get_rename(client: TestClient) -> None:
    owner = await make_user(client)
    team = await make_team(client, owner, "research")
    assert team["name"] == "research" and team["role"] == "owner" and team["members"] == 1
    assert set(team) == {"id", "name", "role", "members", "created_at"}
    listing = await (await client.get(TEAMS, headers=owner.headers)).json()
    assert listing["total"] == 1 and [t["id"] for t in listing["items"]] == [team["id"]]
    resp = await client.patch(f"{TEAMS}/{team['id']}", json={"name": "lab"}, headers=owner.headers)
    assert resp.status == 200 and (await resp.json())["name"] == "lab"
    got = await (await client.get(f"{TEAMS}/{team['id']}", headers=owner.headers)).json()
    assert got["name"] == "lab" and got["role"] == "owner"


async def test_duplicate_and_bad_names(client: TestClient) -> None:
    owner, other = await make_user(client), await make_user(client)
    first = await make_team(client, owner, "dup")
    error = await error_of(await client.post(TEAMS, json={"name": "dup"}, headers=other.headers), 409)
    assert error["code"] == "duplicate_team_name" and error["param"] == "name"
    second = await make_team(client, owner, "other")
    resp = await client.patch(f"{TEAMS}/{second['id']}", json={"name": "dup"}, headers=owner.headers)
    assert (await error_of(resp, 409))["code"] == "duplicate_team_name"
    for bad in ("a/b", "", " ", "x" * 101, "tab\there"):
        resp = await client.post(TEAMS, json={"name": bad}, headers=owner.headers)
        assert (await error_of(resp, 422))["param"] == "name"
    assert (await client.get(f"{TEAMS}/{first['id']}", headers=owner.headers)).status == 200


async def test_roles_matrix_on_team_and_member_routes(client: TestClient) -> None:
    owner, member, outsider, team = await _setup(client)
    tid = team["id"]
    spare, invitee = await make_user(client), await make_user(client)
    await add_member(client, owner, team, spare)
    routes: list[tuple[str, str, dict[str, Any] | None, int, int]] = [
        # method, path, body, member's status, owner's status
        ("GET", f"{TEAMS}/{tid}", None, 200, 200),
        ("GET", f"{TEAMS}/{tid}/members", None, 200, 200),
        ("GET", f"{TEAMS}/{tid}/llm-configurations", None, 200, 200),
        ("GET", f"{TEAMS}/{tid}/audit-events", None, 403, 200),
        ("PATCH", f"{TEAMS}/{tid}", {"name": "renamed"}, 403, 200),
        ("POST", f"{TEAMS}/{tid}/members", {"user": invitee.name}, 403, 202),
        ("PATCH", f"{TEAMS}/{tid}/members/{spare.id}", {"role": "owner"}, 403, 200),
        ("DELETE", f"{TEAMS}/{tid}/members/{spare.id}", None, 403, 204),
        ("POST", f"{TEAMS}/{tid}/rotate-key", None, 403, 200),
        ("POST", f"{TEAMS}/{tid}/llm-configurations/share", {"configuration_id": str(uuid.uuid4())}, 403, 404),
    ]
    for method, path, body, member_status, owner_status in routes:
        resp = await client.request(method, path, json=body, headers=outsider.headers)
        error = await error_of(resp, 404)
        assert "team" in error["message"].lower() and tid not in error["message"], (method, path)
        resp = await client.request(method, path, json=body, headers=member.headers)
        assert resp.status == member_status, (method, path, await resp.text())
        if member_status == 403:
            assert (await resp.json())["error"]["code"] == "team_owner_required"
        resp = await client.request(method, path, json=body, headers=owner.headers)
        assert resp.status == owner_status, (method, path, await resp.text())
    resp = await client.delete(f"{TEAMS}/{tid}", headers=outsider.headers)
    assert resp.status == 404
    resp = await client.delete(f"{TEAMS}/{tid}", headers=member.headers)
    assert resp.status == 403
    assert (await client.delete(f"{TEAMS}/{tid}", headers=owner.headers)).status == 204
    assert (await client.get(f"{TEAMS}/{tid}", headers=owner.headers)).status == 404
    assert (await (await client.get(TEAMS, headers=member.headers)).json())["total"] == 0


async def test_unknown_team_ids_are_404(client: TestClient) -> None:
    owner = await make_user(client)
    for path in (f"{TEAMS}/{uuid.uuid4()}", f"{TEAMS}/{uuid.uuid4()}/members", f"{TEAMS}/not-a-uuid"):
        assert (await client.get(path, headers=owner.headers)).status == 404


async def test_members_add_list_roles_and_unknown_user(client: TestClient) -> None:
    owner, member, _, team = await _setup(client)
    listing = await (await client.get(f"{TEAMS}/{team['id']}/members", headers=member.headers)).json()
    assert [(m["name"], m["role"]) for m in listing["items"]] == [(owner.name, "owner"), (member.name, "member")]
    # Inviting answers the same for an unknown name and for a member already there: nothing to learn.
    unknown = await client.post(f"{TEAMS}/{team['id']}/members", json={"user": "nobody-" + uuid.uuid4().hex},
                                headers=owner.headers)
    again = await client.post(f"{TEAMS}/{team['id']}/members", json={"user": member.name}, headers=owner.headers)
    assert unknown.status == again.status == 202 and await unknown.json() == await again.json()
    resp = await client.post(f"{TEAMS}/{team['id']}/members", json={"user": member.name, "role": "boss"},
                             headers=owner.headers)
    assert (await error_of(resp, 422))["param"] == "role"
    resp = await client.patch(f"{TEAMS}/{team['id']}/members/{member.id}", json={"role": "owner"},
                              headers=owner.headers)
    assert (await resp.json())["role"] == "owner"
    # The new owner can now do owners' things, including demoting the first owner.
    resp = await client.patch(f"{TEAMS}/{team['id']}/members/{owner.id}", json={"role": "member"},
                              headers=member.headers)
    assert resp.status == 200
    assert (await client.patch(f"{TEAMS}/{team['id']}", json={"name": "x"}, headers=owner.headers)).status == 403


async def test_last_owner_can_neither_leave_nor_be_demoted(client: TestClient) -> None:
    owner, member, _, team = await _setup(client)
    path = f"{TEAMS}/{team['id']}/members/{owner.id}"
    error = await error_of(await client.patch(path, json={"role": "member"}, headers=owner.headers), 409)
    assert error["code"] == "last_owner"
    assert (await error_of(await client.delete(path, headers=owner.headers), 409))["code"] == "last_owner"
    # A member may leave by itself, but not remove others.
    resp = await client.delete(f"{TEAMS}/{team['id']}/members/{owner.id}", headers=member.headers)
    assert resp.status == 403
    assert (await client.delete(f"{TEAMS}/{team['id']}/members/{member.id}", headers=member.headers)).status == 204
    assert (await client.get(f"{TEAMS}/{team['id']}", headers=member.headers)).status == 404
    # With a second owner, the first may leave.
    await add_member(client, owner, team, member, role="owner")
    assert (await client.delete(path, headers=owner.headers)).status == 204
    assert (await client.get(f"{TEAMS}/{team['id']}", headers=member.headers)).status == 200


async def test_every_team_change_is_audited_for_owners_only(client: TestClient) -> None:
    owner, member, _, team = await _setup(client)
    await client.patch(f"{TEAMS}/{team['id']}", json={"name": "renamed-" + uuid.uuid4().hex[:6]},
                       headers=owner.headers)
    await client.patch(f"{TEAMS}/{team['id']}/members/{member.id}", json={"role": "owner"}, headers=owner.headers)
    events = await (await client.get(f"{TEAMS}/{team['id']}/audit-events", headers=owner.headers)).json()
    actions = [e["action"] for e in events["items"]]
    assert actions == ["team.member_role", "team.rename", "team.member_join", "team.member_invite", "team.create"]
    assert all(e["team_id"] == team["id"] for e in events["items"])
    # The actor's own audit list shows them too.
    own = await (await client.get("/api/audit-events", headers=owner.headers)).json()
    assert {"team.create", "team.rename"} <= {e["action"] for e in own["items"]}


async def test_membership_changes_are_announced_to_every_affected_user(client: TestClient) -> None:
    owner, member, _, team = await _setup(client)
    seen: list[Change] = []
    client.server.app[CHANGES].subscribe(seen.append)
    assert (await client.delete(f"{TEAMS}/{team['id']}/members/{member.id}", headers=owner.headers)).status == 204
    assert {c.user_id for c in seen if c.kind == "teams"} == {owner.id, member.id}
    seen.clear()
    assert (await client.delete(f"{TEAMS}/{team['id']}", headers=owner.headers)).status == 204
    assert {c.user_id for c in seen if c.kind == "teams"} == {owner.id}
