"""Team key rotation (an owner's action): a fresh data key for the team, the team's configurations re-encrypted
under it in batches of one transaction each, then the old data keys destroyed.

Resumable like ring rotation: the first run retires the team's current key and makes the new one; a run that
finds retired keys still in use continues under the newest key instead of making another. Each update is
conditional on the ciphertext read, so a key changed meanwhile by an owner is left to that write."""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.crypto.envelope import decrypt_team_key, encrypt_team_key
from gateway.crypto.keyring import KeyRing
from gateway.crypto.team_keys import create_team_key, current_team_key, data_key
from gateway.store.changes import ChangeBus
from gateway.store.db import rows_affected
from gateway.store.models import LLMConfiguration, TeamKey, utcnow
from gateway.teams.membership import changes_for, lock_team, member_ids


class TeamRotationReport(BaseModel):
    """What one team key rotation run did."""

    team_key_id: str
    resumed: bool
    rotated: int = 0
    batches: int = 0
    remaining: int = 0
    retired_keys_destroyed: int = 0


async def _begin(session: AsyncSession, *, keyring: KeyRing, team_id: uuid.UUID) -> tuple[str, bool]:
    """The key to rotate onto, and whether an interrupted rotation is resumed."""
    await lock_team(session, team_id=team_id)
    retired = (await session.execute(select(func.count()).select_from(TeamKey).where(
        TeamKey.team_id == team_id, TeamKey.retired_at.is_not(None)))).scalar_one()
    if retired:
        team_key_id, _ = await current_team_key(session, keyring=keyring, team_id=team_id)
        return team_key_id, True
    await session.execute(update(TeamKey).where(TeamKey.team_id == team_id, TeamKey.retired_at.is_(None))
                          .values(retired_at=utcnow()))
    team_key_id, _ = await create_team_key(session, keyring=keyring, team_id=team_id)
    return team_key_id, False


async def _batch(session: AsyncSession, *, keyring: KeyRing, bus: ChangeBus, team_id: uuid.UUID,
                 batch_size: int) -> tuple[int, int]:
    """Re-encrypt up to batch_size configurations of the team still under an old key; (seen, rotated)."""
    await lock_team(session, team_id=team_id)
    team_key_id, new_key = await current_team_key(session, keyring=keyring, team_id=team_id)
    rows = (await session.execute(
        select(LLMConfiguration.id, LLMConfiguration.key_id, LLMConfiguration.api_key_encrypted)
        .where(LLMConfiguration.team_id == team_id, LLMConfiguration.key_id != team_key_id)
        .order_by(LLMConfiguration.id).limit(batch_size)
    )).all()
    old_keys: dict[str, bytes] = {}
    rotated = 0
    for config_id, old_key_id, stored in rows:
        if old_key_id not in old_keys:
            old_keys[old_key_id] = await data_key(session, keyring=keyring, team_id=team_id, team_key_id=old_key_id)
        plaintext = decrypt_team_key(old_keys[old_key_id], stored=stored, configuration_id=config_id, team_id=team_id)
        fresh = encrypt_team_key(new_key, team_key_id=team_key_id, configuration_id=config_id, team_id=team_id,
                                 plaintext=plaintext)
        result = await session.execute(
            update(LLMConfiguration).where(LLMConfiguration.id == config_id,
                                           LLMConfiguration.api_key_encrypted == stored)
            .values(api_key_encrypted=fresh, key_id=team_key_id, updated_at=utcnow()))
        rotated += rows_affected(result)
    await bus.commit(session, *changes_for(await member_ids(session, team_id=team_id)))
    return len(rows), rotated


async def _finish(session: AsyncSession, *, bus: ChangeBus, team_id: uuid.UUID) -> int:
    """Destroy the retired keys once no configuration is under them; how many were destroyed."""
    await lock_team(session, team_id=team_id)
    in_use = select(LLMConfiguration.key_id).where(LLMConfiguration.team_id == team_id)
    result = await session.execute(delete(TeamKey).where(
        TeamKey.team_id == team_id, TeamKey.retired_at.is_not(None), TeamKey.id.not_in(in_use)))
    await bus.commit(session, *changes_for(await member_ids(session, team_id=team_id)))
    return rows_affected(result)


async def rotate_team_key(sessionmaker: async_sessionmaker[AsyncSession], *, keyring: KeyRing, bus: ChangeBus,
                          team_id: uuid.UUID, batch_size: int = 200, max_batches: int | None = None
                          ) -> TeamRotationReport:
    """Rotate (or resume rotating) one team's data key; `max_batches` stops early, a second call resumes.
    The caller has checked that the team exists and the user owns it."""
    async with sessionmaker() as session:
        team_key_id, resumed = await _begin(session, keyring=keyring, team_id=team_id)
        await session.commit()
    report = TeamRotationReport(team_key_id=team_key_id, resumed=resumed)
    while max_batches is None or report.batches < max_batches:
        async with sessionmaker() as session:
            seen, rotated = await _batch(session, keyring=keyring, bus=bus, team_id=team_id, batch_size=batch_size)
        if seen == 0:
            break
        report.batches += 1
        report.rotated += rotated
    async with sessionmaker() as session:
        report.remaining = (await session.execute(select(func.count()).select_from(LLMConfiguration).where(
            LLMConfiguration.team_id == team_id, LLMConfiguration.key_id != team_key_id))).scalar_one()
    if report.remaining == 0:
        async with sessionmaker() as session:
            report.retired_keys_destroyed = await _finish(session, bus=bus, team_id=team_id)
    return report
