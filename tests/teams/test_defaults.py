"""One default per user, whichever kind, on SQLite and PostgreSQL: a member makes a team configuration their
default (set-default or PATCH is_default), a personal default clears it and the reverse, leaving the team drops
it, and simultaneous switches between an own and a team configuration leave exactly one default."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from gateway.store.models import ConversationConfiguration, LLMConfiguration, MemberDefault
from gateway.teams.defaults import default_configuration_id
from gateway.web.appkeys import SESSIONMAKER
from tests.factories import TestUser, add_member, make_configuration, make_team, make_team_configuration, make_user

URL = "/api/llm-configurations"


async def _defaults(client: TestClient, user: TestUser) -> tuple[int, int, uuid.UUID | None]:
    """(personal rows marked default, team default rows, the one default) of a user, as stored."""
    uid = uuid.UUID(user.id)
    async with client.server.app[SESSIONMAKER]() as session:
        personal = (await session.execute(select(func.count()).select_from(LLMConfiguration).where(
            LLMConfiguration.user_id == uid, LLMConfiguration.is_default.is_(True)))).scalar_one()
        team = (await session.execute(select(func.count()).select_from(MemberDefault).where(
            MemberDefault.user_id == uid))).scalar_one()
        return personal, team, await default_configuration_id(session, user_id=uid)


async def test_a_member_switches_between_own_and_team_defaults(client: TestClient) -> None:
    owner, member = await make_user(client), await make_user(client)
    team = await make_team(client, owner)
    await add_member(client, owner, team, member)
    own = await make_configuration(client, member)
    shared = await make_team_configuration(client, owner, team)
    assert await _defaults(client, member) == (1, 0, uuid.UUID(own["id"]))
    resp = await client.put(f"{URL}/{shared['id']}/set-default", headers=member.headers)
    assert resp.status == 200 and (await resp.json())["is_default"] is True
    assert await _defaults(client, member) == (0, 1, uuid.UUID(shared["id"]))
    # Only the member's own choice: the owner's view of the same configuration is not their default.
    assert (await (await client.get(f"{URL}/{shared['id']}", headers=owner.headers)).json())["is_default"] is False
    listing = await (await client.get(URL, headers=member.headers)).json()
    assert {c["id"]: c["is_default"] for c in listing["items"]} == {own["id"]: False, shared["id"]: True}
    resp = await client.patch(f"{URL}/{own['id']}", json={"is_default": True}, headers=member.headers)
    assert resp.status == 200
    assert await _defaults(client, member) == (1, 0, uuid.UUID(own["id"]))
    resp = await client.patch(f"{URL}/{shared['id']}", json={"is_default": True}, headers=member.headers)
    assert resp.status == 200 and (await resp.json())["is_default"] is True
    assert await _defaults(client, member) == (0, 1, uuid.UUID(shared["id"]))


async def test_leaving_the_team_drops_its_default_and_bindings(client: TestClient) -> None:
    owner, member = await make_user(client), await make_user(client)
    team = await make_team(client, owner)
    await add_member(client, owner, team, member)
    shared = await make_team_configuration(client, owner, team)
    assert (await client.put(f"{URL}/{shared['id']}/set-default", headers=member.headers)).status == 200
    async with client.server.app[SESSIONMAKER]() as session:
        session.add(ConversationConfiguration(user_id=uuid.UUID(member.id), conversation_id="c1",
                                              configuration_id=uuid.UUID(shared["id"])))
        await session.commit()
    # The first personal configuration made meanwhile does not take over: the user has a default already.
    own = await make_configuration(client, member)
    assert not own["is_default"] and await _defaults(client, member) == (0, 1, uuid.UUID(shared["id"]))
    resp = await client.delete(f"/api/teams/{team['id']}/members/{member.id}", headers=member.headers)
    assert resp.status == 204
    assert await _defaults(client, member) == (0, 0, None)
    async with client.server.app[SESSIONMAKER]() as session:
        assert (await session.execute(select(ConversationConfiguration))).first() is None
    assert (await client.put(f"{URL}/{shared['id']}/set-default", headers=member.headers)).status == 404


async def test_concurrent_set_default_leaves_exactly_one(client: TestClient) -> None:
    owner, member = await make_user(client), await make_user(client)
    team = await make_team(client, owner)
    await add_member(client, owner, team, member)
    own = [await make_configuration(client, member) for _ in range(2)]
    shared = [await make_team_configuration(client, owner, team) for _ in range(2)]
    targets = [c["id"] for c in own + shared] * 4
    for _ in range(3):
        responses = await asyncio.gather(*(client.put(f"{URL}/{t}/set-default", headers=member.headers)
                                           for t in targets))
        assert all(r.status in (200, 409) for r in responses), [r.status for r in responses]
        assert any(r.status == 200 for r in responses)
        personal, team_rows, chosen = await _defaults(client, member)
        assert personal + team_rows == 1 and str(chosen) in targets


async def test_creating_a_team_configuration_as_default_makes_it_the_owners_only(client: TestClient) -> None:
    owner, member = await make_user(client), await make_user(client)
    team = await make_team(client, owner)
    await add_member(client, owner, team, member)
    own = await make_configuration(client, owner)
    made = await make_team_configuration(client, owner, team, is_default=True)
    assert made["is_default"] is True and own["is_default"] is True
    assert await _defaults(client, owner) == (0, 1, uuid.UUID(made["id"]))
    assert await _defaults(client, member) == (0, 0, None)
