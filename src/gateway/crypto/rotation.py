"""Key rotation: re-encrypt every configuration still under an old key id, in batches of one transaction each.

Teams' data keys are re-wrapped under the primary key first (a handful of rows; their configurations, encrypted
under the data keys, are not touched).

Safe to interrupt (each batch commits; what is done is not selected again) and to run beside another rotation
or a serving gateway: on PostgreSQL a batch locks its rows with FOR UPDATE SKIP LOCKED, so two rotations take
different rows; on SQLite the database lock serialises writers. Every update is conditional on the stored value
being the one that was read, so a key changed meanwhile by a user is left to that user's write."""

from __future__ import annotations

import asyncio
import logging
import uuid

from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.crypto.inventory import ring_key_use, teams_missing_data_keys
from gateway.crypto.keyring import CryptoError, KeyRing, row_binding
from gateway.crypto.team_keys import rewrap_team_keys
from gateway.store.changes import Change, ChangeBus
from gateway.store.db import dialect_name, rows_affected, take_sqlite_write_lock
from gateway.store.models import LLMConfiguration, utcnow

log = logging.getLogger("gateway.rotation")
SQLITE_BUSY_RETRIES = 5


class RotationReport(BaseModel):
    """What one rotation run did."""

    primary_key_id: str
    rotated: int = 0
    team_keys_rewrapped: int = 0
    batches: int = 0
    failed: list[uuid.UUID] = Field(default_factory=list, description="rows whose key could not be decrypted")
    team_keys_failed: list[str] = Field(default_factory=list,
                                        description="team data keys that could not be unwrapped (their ring key is "
                                                    "not in the ring)")
    remaining: int = 0


class KeyIdCount(BaseModel):
    """How many configurations (and team data keys) are stored under one ring key id."""

    key_id: str
    rows: int
    team_keys: int = 0
    in_ring: bool
    primary: bool


class EncryptionStatus(BaseModel):
    """Rows per key id, and whether the ring can read them all."""

    primary_key_id: str
    ring_key_ids: list[str]
    key_ids: list[KeyIdCount]
    needs_rotation: int
    all_in_ring: bool
    missing_key_ids: list[str]
    teams_missing_data_keys: dict[str, int] = Field(
        default_factory=dict, description="team name → configurations naming a data key the team no longer has "
                                          "(a damaged database: those keys cannot be read)")


async def encryption_status(session: AsyncSession, *, keyring: KeyRing) -> EncryptionStatus:
    """Count personal configurations and team data keys per ring key id (team configurations are under their
    team's data key, which the ring wraps)."""
    counts = [KeyIdCount(key_id=use.key_id, rows=use.rows, team_keys=use.team_keys,
                         in_ring=use.key_id in keyring.key_ids, primary=use.key_id == keyring.primary_id)
              for use in await ring_key_use(session)]
    missing = [c.key_id for c in counts if not c.in_ring]
    return EncryptionStatus(
        primary_key_id=keyring.primary_id, ring_key_ids=list(keyring.key_ids), key_ids=counts,
        needs_rotation=sum(c.rows + c.team_keys for c in counts if not c.primary), all_in_ring=not missing,
        missing_key_ids=missing, teams_missing_data_keys=await teams_missing_data_keys(session),
    )


async def _rotate_batch(session: AsyncSession, *, keyring: KeyRing, bus: ChangeBus, batch_size: int,
                        failed: list[uuid.UUID]) -> tuple[int, int]:
    """Re-encrypt up to batch_size rows in this session's transaction; (rows seen, rows rotated)."""
    query = (
        select(LLMConfiguration.id, LLMConfiguration.user_id, LLMConfiguration.api_key_encrypted)
        .where(LLMConfiguration.key_id != keyring.primary_id, LLMConfiguration.team_id.is_(None))
        .order_by(LLMConfiguration.id)
        .limit(batch_size)
    )
    if failed:
        query = query.where(LLMConfiguration.id.not_in(failed))
    if dialect_name(session) == "postgresql":
        query = query.with_for_update(skip_locked=True)
    else:
        await take_sqlite_write_lock(session)
    rows = (await session.execute(query)).all()
    users: set[str] = set()
    rotated = 0
    for config_id, user_id, stored in rows:
        try:
            fresh = keyring.reencrypt(stored, binding=row_binding(config_id, user_id))
        except CryptoError as exc:
            log.error("configuration %s cannot be rotated: %s", config_id, exc)
            failed.append(config_id)
            continue
        result = await session.execute(
            update(LLMConfiguration)
            .where(LLMConfiguration.id == config_id, LLMConfiguration.api_key_encrypted == stored)
            .values(api_key_encrypted=fresh, key_id=keyring.primary_id, updated_at=utcnow())
        )
        if rows_affected(result):
            rotated += 1
            users.add(str(user_id))
    await bus.commit(session, *(Change("configurations", u) for u in sorted(users)))
    return len(rows), rotated


async def rotate_keys(sessionmaker: async_sessionmaker[AsyncSession], *, keyring: KeyRing, bus: ChangeBus,
                      batch_size: int = 200, max_batches: int | None = None) -> RotationReport:
    """Re-encrypt every row not under the primary key; `max_batches` stops early (run again to resume)."""
    report = RotationReport(primary_key_id=keyring.primary_id)
    async with sessionmaker() as session:
        report.team_keys_rewrapped, report.team_keys_failed = await rewrap_team_keys(session, keyring=keyring)
        await session.commit()
    for team_key_id in report.team_keys_failed:
        log.error("team data key %s cannot be re-wrapped: its ring key is not in the ring", team_key_id)
    while max_batches is None or report.batches < max_batches:
        for attempt in range(SQLITE_BUSY_RETRIES):
            try:
                async with sessionmaker() as session:
                    seen, rotated = await _rotate_batch(session, keyring=keyring, bus=bus, batch_size=batch_size,
                                                        failed=report.failed)
                break
            except OperationalError:
                # SQLite under another writer past its busy timeout: the batch rolled back, so just retry it.
                if attempt == SQLITE_BUSY_RETRIES - 1:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))
        if seen == 0:
            break
        report.batches += 1
        report.rotated += rotated
    async with sessionmaker() as session:
        report.remaining = (await encryption_status(session, keyring=keyring)).needs_rotation
    return report
