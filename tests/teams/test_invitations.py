"""Membership by invitation (DESIGN §8), on SQLite and PostgreSQL, with two users: an owner's invitation answers
202 with the same body whatever the name (no enumeration), the invitee alone lists, accepts or declines it, and
until it accepts it is not a member — not in the members list, not served the team's configurations. Operators
add directly. Teams per user are bounded (MAX_TEAMS_PER_USER)."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.admin.test_configurations_api import error_of
from tests.conftest import ADMIN_TOKEN
from tests.factories import (
    ApiUser,
    add_member,
    invite,
    make_team,
    make_team_configuration,
    make_user,
    pending_invitations,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _names(client: TestClient, user: ApiUser, team: dict[str, Any]) -> list[tuple[str, str]]:
    listing = await (await client.get(f"/api/teams/{team['id']}/members", headers=user.headers)).json()
    return [(m["name"], m["role"]) for m in listing["items"]]


async def _served(client: TestClient, user: ApiUser, label: str) -> int:
    resp = await client.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "user",
                             "content": "hi"}]}, headers={**user.headers, "X-LLM-Configuration": label})
    return resp.status


async def test_invitee_is_no_member_until_it_accepts(client: TestClient) -> None:
    owner, invitee = await make_user(client), await make_user(client)
    team = await make_team(client, owner, "lab-" + uuid.uuid4().hex[:6])
    await make_team_configuration(client, owner, team, name="shared")
    await invite(client, owner, team, invitee, role="owner")
    # Pending: the invitee sees the invitation, not the team; the owner's members list has no invitee.
    (pending,) = await pending_invitations(client, invitee)
    assert pending["team"] == {"id": team["id"], "name": team["name"]}
    assert pending["role"] == "owner" and pending["invited_by"] == owner.name
    assert set(pending) == {"id", "team", "role", "invited_by", "created_at"}
    assert await _names(client, owner, team) == [(owner.name, "owner")]
    assert (await client.get(f"/api/teams/{team['id']}", headers=invitee.headers)).status == 404
    assert await _served(client, invitee, f"{team['name']}/shared") == 404
    assert await pending_invitations(client, owner) == []
    # Nobody else may answer it: the owner, another user, an unknown id — the same 404.
    for who in (owner, await make_user(client)):
        for verb in ("accept", "decline"):
            resp = await client.post(f"/api/invitations/{pending['id']}/{verb}", headers=who.headers)
            assert (await error_of(resp, 404))["message"] == "No invitation with this id"
    resp = await client.post(f"/api/invitations/{uuid.uuid4()}/accept", headers=invitee.headers)
    assert (await error_of(resp, 404))["message"] == "No invitation with this id"
    assert len(await pending_invitations(client, invitee)) == 1
    # Accepting makes the membership with the invited role, once.
    resp = await client.post(f"/api/invitations/{pending['id']}/accept", headers=invitee.headers)
    assert resp.status == 200
    joined = await resp.json()
    assert joined["id"] == team["id"] and joined["role"] == "owner" and joined["members"] == 2
    assert await pending_invitations(client, invitee) == []
    assert sorted(await _names(client, invitee, team)) == sorted([(owner.name, "owner"), (invitee.name, "owner")])
    assert (await client.post(f"/api/invitations/{pending['id']}/accept", headers=invitee.headers)).status == 404
    events = await (await client.get(f"/api/teams/{team['id']}/audit-events", headers=owner.headers)).json()
    assert [e["action"] for e in events["items"][:2]] == ["team.member_join", "team.member_invite"]


async def test_declined_invitation_leaves_no_membership(client: TestClient) -> None:
    owner, invitee = await make_user(client), await make_user(client)
    team = await make_team(client, owner)
    await invite(client, owner, team, invitee)
    (pending,) = await pending_invitations(client, invitee)
    assert (await client.post(f"/api/invitations/{pending['id']}/decline", headers=invitee.headers)).status == 204
    assert await pending_invitations(client, invitee) == []
    assert await _names(client, owner, team) == [(owner.name, "owner")]
    assert (await client.post(f"/api/invitations/{pending['id']}/accept", headers=invitee.headers)).status == 404
    events = await (await client.get(f"/api/teams/{team['id']}/audit-events", headers=owner.headers)).json()
    assert events["items"][0]["action"] == "team.member_decline"
    # Inviting again works, and an invitation pending twice is one invitation (the last role).
    await invite(client, owner, team, invitee)
    await invite(client, owner, team, invitee, role="owner")
    (again,) = await pending_invitations(client, invitee)
    assert again["role"] == "owner"


async def test_an_invitation_says_nothing_of_which_users_exist(client: TestClient) -> None:
    owner, existing, member = await make_user(client), await make_user(client), await make_user(client)
    team = await make_team(client, owner)
    await add_member(client, owner, team, member)

    async def ask(name: str) -> tuple[int, Any, float]:
        started = time.perf_counter()
        resp = await client.post(f"/api/teams/{team['id']}/members", json={"user": name}, headers=owner.headers)
        return resp.status, await resp.json(), time.perf_counter() - started

    answers = {name: await ask(name) for name in (existing.name, "nobody-" + uuid.uuid4().hex, member.name,
                                                  existing.name)}  # the last: pending already
    assert {(status, str(body)) for status, body, _ in answers.values()} == {(202, str(answers[member.name][1]))}
    # The team's audit (owners read it) names what was asked, exists or not, in the same shape.
    events = await (await client.get(f"/api/teams/{team['id']}/audit-events", headers=owner.headers)).json()
    invites = [e for e in events["items"] if e["action"] == "team.member_invite"]
    assert {tuple(sorted(e["details"])) for e in invites} == {("role", "user")}
    # Timing: an existing and an unknown name cost the same queries; medians over rounds stay close.
    rounds: dict[str, list[float]] = {"known": [], "unknown": []}
    for _ in range(15):
        rounds["known"].append((await ask(existing.name))[2])
        rounds["unknown"].append((await ask("nobody-" + uuid.uuid4().hex))[2])
    known, unknown = statistics.median(rounds["known"]), statistics.median(rounds["unknown"])
    assert abs(known - unknown) < max(known, unknown) * 0.5 + 0.005, (known, unknown)


async def test_operators_add_directly_and_owners_only_invite(client: TestClient) -> None:
    owner, user = await make_user(client), await make_user(client)
    team = await make_team(client, owner)
    resp = await client.post(f"/api/admin/teams/{team['id']}/members", json={"user": user.name}, headers=ADMIN)
    assert resp.status == 201 and (await resp.json())["role"] == "member"
    assert sorted(await _names(client, user, team)) == sorted([(owner.name, "owner"), (user.name, "member")])
    resp = await client.post(f"/api/admin/teams/{team['id']}/members", json={"user": "nobody-x"}, headers=ADMIN)
    assert (await error_of(resp, 404))["param"] == "user"
    # A member may not invite.
    resp = await client.post(f"/api/teams/{team['id']}/members", json={"user": owner.name}, headers=user.headers)
    assert (await error_of(resp, 403))["code"] == "team_owner_required"


@pytest.fixture
async def bounded(aiohttp_client: Any, settings: Settings) -> TestClient:
    """The gateway with MAX_TEAMS_PER_USER=2."""
    made: TestClient = await aiohttp_client(create_app(settings.model_copy(update={"max_teams_per_user": 2})))
    return made


async def test_teams_per_user_are_bounded(bounded: TestClient) -> None:
    client = bounded
    owner, invitee = await make_user(client), await make_user(client)
    teams = [await make_team(client, owner) for _ in range(2)]
    resp = await client.post("/api/teams", json={"name": "third"}, headers=owner.headers)
    error = await error_of(resp, 409)
    assert error["code"] == "too_many_teams" and "MAX_TEAMS_PER_USER" in error["message"]
    assert (await (await client.get("/api/teams", headers=owner.headers)).json())["total"] == 2
    # An invitee at the bound cannot accept; the invitation stays for when it has room.
    for _ in range(2):
        await make_team(client, invitee)
    await invite(client, owner, teams[0], invitee)
    (pending,) = await pending_invitations(client, invitee)
    resp = await client.post(f"/api/invitations/{pending['id']}/accept", headers=invitee.headers)
    assert (await error_of(resp, 409))["code"] == "too_many_teams"
    assert await _names(client, owner, teams[0]) == [(owner.name, "owner")]
    assert len(await pending_invitations(client, invitee)) == 1
    # Operators are bound too.
    resp = await client.post(f"/api/admin/teams/{teams[1]['id']}/members", json={"user": invitee.name},
                             headers=ADMIN)
    assert (await error_of(resp, 409))["code"] == "too_many_teams"


async def test_simultaneous_joins_never_pass_the_teams_bound(bounded: TestClient) -> None:
    """Two acceptances (and two creations) at once by a user with room for one more team: exactly one passes.
    Each counted the user's teams before either wrote, so both used to pass (PostgreSQL)."""
    client = bounded
    owner, invitee = await make_user(client), await make_user(client)
    teams = [await make_team(client, owner) for _ in range(2)]
    await make_team(client, invitee)
    for team in teams:
        await invite(client, owner, team, invitee)
    pending = await pending_invitations(client, invitee)
    answers = await asyncio.gather(*(client.post(f"/api/invitations/{i['id']}/accept", headers=invitee.headers)
                                     for i in pending))
    assert sorted(resp.status for resp in answers) == [200, 409]
    assert (await (await client.get("/api/teams", headers=invitee.headers)).json())["total"] == 2
    creator = await make_user(client)
    await make_team(client, creator)
    answers = await asyncio.gather(*(client.post("/api/teams", json={"name": f"race-{uuid.uuid4().hex[:8]}"},
                                                 headers=creator.headers) for _ in range(2)))
    assert sorted(resp.status for resp in answers) == [201, 409]
    assert (await (await client.get("/api/teams", headers=creator.headers)).json())["total"] == 2


@pytest.mark.parametrize("fate", ["removed", "demoted", "deleted"])
async def test_an_invitation_dies_with_its_inviters_ownership(client: TestClient, fate: str) -> None:
    """O invites E as owner; a co-owner P then removes or demotes O (or an operator deletes O): E's acceptance is
    refused and E never joins, so a dismissed owner's offer cannot hand the team out afterwards."""
    founder, dismissed, invitee = await make_user(client), await make_user(client), await make_user(client)
    team = await make_team(client, founder)
    await add_member(client, founder, team, dismissed, role="owner")
    await invite(client, dismissed, team, invitee, role="owner")
    member_url = f"/api/teams/{team['id']}/members/{dismissed.id}"
    if fate == "removed":
        resp = await client.delete(member_url, headers=founder.headers)
    elif fate == "demoted":
        resp = await client.patch(member_url, json={"role": "member"}, headers=founder.headers)
    else:
        resp = await client.delete(f"/api/admin/users/{dismissed.id}", headers=ADMIN)
    assert resp.status in (200, 204), await resp.text()
    (invitation,) = await pending_invitations(client, invitee)
    resp = await client.post(f"/api/invitations/{invitation['id']}/accept", headers=invitee.headers)
    assert resp.status == 409, await resp.text()
    assert (await resp.json())["error"]["code"] == "invitation_withdrawn"
    assert invitee.name not in [name for name, _ in await _names(client, founder, team)]
    # The founder's own invitation still works.
    await invite(client, founder, team, invitee)
    (renewed,) = await pending_invitations(client, invitee)
    resp = await client.post(f"/api/invitations/{renewed['id']}/accept", headers=invitee.headers)
    assert resp.status == 200, await resp.text()
    assert (invitee.name, "member") in await _names(client, founder, team)
