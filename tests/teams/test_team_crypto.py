"""Teams' envelope encryption on SQLite and PostgreSQL: ciphertexts bound to their row and team, crypto-shredding
on delete (a dump of the rows taken before does not decrypt after), ring rotation re-wrapping data keys without
touching configurations, and team key rotation interrupted and resumed."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import insert, select

from gateway.app import create_app
from gateway.configurations.crud import decrypt_key
from gateway.crypto.envelope import decrypt_team_key, unwrap_data_key
from gateway.crypto.keyring import CryptoError, DecryptionFailed, KeyRing
from gateway.crypto.rotation import encryption_status, rotate_keys
from gateway.crypto.team_keys import TeamKeyMissing, decrypt_configuration_key
from gateway.settings import Settings
from gateway.store.changes import Change
from gateway.store.models import LLMConfiguration, Team, TeamKey
from gateway.teams.rotation import rotate_team_key
from gateway.web.appkeys import CHANGES, KEYRING, SESSIONMAKER
from tests.factories import add_member, make_configuration, make_team, make_team_configuration, make_user


async def _rows(client: TestClient, **where: Any) -> list[LLMConfiguration]:
    async with client.server.app[SESSIONMAKER]() as session:
        query = select(LLMConfiguration).filter_by(**where).order_by(LLMConfiguration.name)
        return list((await session.execute(query)).scalars())


async def _open(client: TestClient, config: LLMConfiguration) -> str:
    async with client.server.app[SESSIONMAKER]() as session:
        return await decrypt_configuration_key(session, keyring=client.server.app[KEYRING], configuration=config)


async def test_ciphertexts_do_not_move_between_rows_or_teams(client: TestClient) -> None:
    owner = await make_user(client)
    team, other = await make_team(client, owner), await make_team(client, owner)
    first = await make_team_configuration(client, owner, team, name="a")
    await make_team_configuration(client, owner, team, name="b")
    await make_team_configuration(client, owner, other, name="c")
    personal = await make_configuration(client, owner)
    a, b = await _rows(client, team_id=uuid.UUID(team["id"]))
    (c,) = await _rows(client, team_id=uuid.UUID(other["id"]))
    (mine,) = await _rows(client, user_id=uuid.UUID(owner.id))
    assert await _open(client, a) == first["api_key_plain"]
    for target, value in ((b, a.api_key_encrypted), (c, a.api_key_encrypted), (mine, a.api_key_encrypted),
                          (a, mine.api_key_encrypted)):
        target.api_key_encrypted = value
        with pytest.raises(CryptoError):
            await _open(client, target)
    # A team row is never opened by the ring alone, even with the personal decrypt.
    with pytest.raises(CryptoError):
        decrypt_key(client.server.app[KEYRING], a)
    assert personal["api_key"] not in {a.api_key_encrypted, mine.api_key_encrypted}


async def test_a_data_key_is_wrapped_for_its_team_only(client: TestClient) -> None:
    owner = await make_user(client)
    team, other = await make_team(client, owner), await make_team(client, owner)
    async with client.server.app[SESSIONMAKER]() as session:
        key = (await session.execute(select(TeamKey).where(TeamKey.team_id == uuid.UUID(team["id"])))).scalar_one()
    ring = client.server.app[KEYRING]
    assert key.key_id == ring.primary_id
    assert len(unwrap_data_key(ring, team_id=team["id"], wrapped=key.wrapped_key)) == 32
    with pytest.raises(DecryptionFailed):
        unwrap_data_key(ring, team_id=other["id"], wrapped=key.wrapped_key)


async def test_deleting_a_team_shreds_its_data_key_first(client: TestClient) -> None:
    owner = await make_user(client)
    team = await make_team(client, owner)
    made = await make_team_configuration(client, owner, team)
    tid = uuid.UUID(team["id"])
    dump = [{c.key: getattr(row, c.key) for c in LLMConfiguration.__table__.columns}
            for row in await _rows(client, team_id=tid)]
    async with client.server.app[SESSIONMAKER]() as session:
        team_dump = {c.key: getattr(t, c.key) for t in [await session.get(Team, tid)]
                     for c in Team.__table__.columns}
        data_key = unwrap_data_key(client.server.app[KEYRING], team_id=tid, wrapped=(await session.execute(
            select(TeamKey.wrapped_key).where(TeamKey.team_id == tid))).scalar_one())
    assert decrypt_team_key(data_key, stored=dump[0]["api_key_encrypted"], configuration_id=dump[0]["id"],
                            team_id=tid) == made["api_key_plain"]
    del data_key
    assert (await client.delete(f"/api/teams/{team['id']}", headers=owner.headers)).status == 204
    async with client.server.app[SESSIONMAKER]() as session:
        assert (await session.execute(select(TeamKey))).first() is None
        assert (await session.execute(select(LLMConfiguration))).first() is None
        # Restore the team and its configuration rows from the dump: without the data key they stay sealed.
        await session.execute(insert(Team), [team_dump])
        await session.execute(insert(LLMConfiguration), dump)
        await session.commit()
    (restored,) = await _rows(client, team_id=tid)
    with pytest.raises(TeamKeyMissing):
        await _open(client, restored)


async def test_ring_rotation_rewraps_team_keys_and_leaves_configurations(settings: Settings, key_ring: str,
                                                                       aiohttp_client: Any) -> None:
    # Start on a ring whose primary is the suite's old key (t0), then rotate onto t1.
    old_first = ",".join(reversed(key_ring.split(",")))
    client: TestClient = await aiohttp_client(create_app(settings.model_copy(
        update={"encryption_keys": SecretStr(old_first)})))
    owner = await make_user(client)
    team = await make_team(client, owner)
    made = await make_team_configuration(client, owner, team)
    before = await _rows(client, team_id=uuid.UUID(team["id"]))
    new_ring = KeyRing.from_entries(list(reversed(client.server.app[KEYRING].keys)))
    async with client.server.app[SESSIONMAKER]() as session:
        status = await encryption_status(session, keyring=new_ring)
        # One team data key to re-wrap; the team configuration is under that data key, not under the ring.
        assert status.needs_rotation == 1 and [(k.rows, k.team_keys) for k in status.key_ids] == [(0, 1)]
    report = await rotate_keys(client.server.app[SESSIONMAKER], keyring=new_ring, bus=client.server.app[CHANGES])
    assert report.team_keys_rewrapped == 1 and report.rotated == 0 and report.remaining == 0
    after = await _rows(client, team_id=uuid.UUID(team["id"]))
    assert [r.api_key_encrypted for r in after] == [r.api_key_encrypted for r in before]
    async with client.server.app[SESSIONMAKER]() as session:
        (key,) = (await session.execute(select(TeamKey))).scalars()
        assert key.key_id == new_ring.primary_id
        assert await decrypt_configuration_key(session, keyring=new_ring, configuration=after[0]) == (
            made["api_key_plain"])
        # The old key can now leave the ring.
        only_new = KeyRing((new_ring.keys[0],))
        assert await decrypt_configuration_key(session, keyring=only_new, configuration=after[0]) == (
            made["api_key_plain"])


async def test_team_key_rotation_is_resumable(client: TestClient) -> None:
    app = client.server.app
    owner, member = await make_user(client), await make_user(client)
    team = await make_team(client, owner)
    await add_member(client, owner, team, member)
    made = {m["id"]: m["api_key_plain"] for m in [await make_team_configuration(client, owner, team)
                                                   for _ in range(3)]}
    tid = uuid.UUID(team["id"])
    before = {str(r.id): r.api_key_encrypted for r in await _rows(client, team_id=tid)}
    seen: list[Change] = []
    app[CHANGES].subscribe(seen.append)
    first = await rotate_team_key(app[SESSIONMAKER], keyring=app[KEYRING], bus=app[CHANGES], team_id=tid,
                                  batch_size=1, max_batches=1)
    assert not first.resumed and first.rotated == 1 and first.remaining == 2 and first.retired_keys_destroyed == 0
    assert {c.user_id for c in seen if c.kind == "teams"} == {owner.id, member.id}
    # Midway every configuration still opens: the retired key decrypts until the rotation is done.
    for config in await _rows(client, team_id=tid):
        assert await _open(client, config) == made[str(config.id)]
    async with app[SESSIONMAKER]() as session:
        assert len((await session.execute(select(TeamKey).where(TeamKey.team_id == tid))).all()) == 2
    resp = await client.post(f"/api/teams/{team['id']}/rotate-key", headers=owner.headers)
    second = await resp.json()
    assert resp.status == 200 and second["resumed"] and second["team_key_id"] == first.team_key_id
    assert second["rotated"] == 2 and second["remaining"] == 0 and second["retired_keys_destroyed"] == 1
    after = await _rows(client, team_id=tid)
    assert {r.key_id for r in after} == {first.team_key_id}
    assert all(before[str(r.id)] != r.api_key_encrypted for r in after)
    for config in after:
        assert await _open(client, config) == made[str(config.id)]
    async with app[SESSIONMAKER]() as session:
        assert [k.id for k in (await session.execute(select(TeamKey))).scalars()] == [first.team_key_id]
    # A next rotation starts afresh with another key.
    third = await (await client.post(f"/api/teams/{team['id']}/rotate-key", headers=owner.headers)).json()
    assert not third["resumed"] and third["team_key_id"] != first.team_key_id and third["rotated"] == 3
