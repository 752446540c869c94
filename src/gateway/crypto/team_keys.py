"""Teams' data keys in the database: made, loaded and unwrapped, re-wrapped by ring rotation, destroyed with
their team (crypto-shredding). The cryptography itself is envelope.py."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.crypto.envelope import (
    decrypt_team_key,
    encrypt_team_key,
    new_data_key,
    new_team_key_id,
    unwrap_data_key,
    wrap_data_key,
)
from gateway.crypto.keyring import CryptoError, KeyRing, UnknownKeyId, row_binding
from gateway.store.db import rows_affected
from gateway.store.models import LLMConfiguration, TeamKey, utcnow


class TeamKeyMissing(CryptoError):
    """The team data key a ciphertext names is gone (the team was deleted: its keys were shredded)."""

    def __init__(self) -> None:
        super().__init__("the team data key of this configuration no longer exists")


async def create_team_key(session: AsyncSession, *, keyring: KeyRing, team_id: uuid.UUID) -> tuple[str, bytes]:
    """A fresh data key for the team, stored wrapped (flushed, not committed): (team key id, data key)."""
    data_key = new_data_key()
    ring_key_id, wrapped = wrap_data_key(keyring, team_id=team_id, data_key=data_key)
    team_key_id = new_team_key_id()
    session.add(TeamKey(id=team_key_id, team_id=team_id, key_id=ring_key_id, wrapped_key=wrapped,
                        created_at=utcnow(), retired_at=None))
    await session.flush()
    return team_key_id, data_key


async def current_team_key(session: AsyncSession, *, keyring: KeyRing, team_id: uuid.UUID) -> tuple[str, bytes]:
    """The key that encrypts the team's new configurations (the newest not retired): (team key id, data key)."""
    row = (await session.execute(
        select(TeamKey).where(TeamKey.team_id == team_id, TeamKey.retired_at.is_(None))
        .order_by(TeamKey.created_at.desc(), TeamKey.id).limit(1)
    )).scalar_one_or_none()
    if row is None:
        raise TeamKeyMissing
    return row.id, unwrap_data_key(keyring, team_id=team_id, wrapped=row.wrapped_key)


async def data_key(session: AsyncSession, *, keyring: KeyRing, team_id: uuid.UUID, team_key_id: str) -> bytes:
    """One data key of the team, unwrapped; TeamKeyMissing when it was shredded."""
    row = (await session.execute(
        select(TeamKey).where(TeamKey.id == team_key_id, TeamKey.team_id == team_id)
    )).scalar_one_or_none()
    if row is None:
        raise TeamKeyMissing
    return unwrap_data_key(keyring, team_id=team_id, wrapped=row.wrapped_key)


def decrypt_with_data_key(data_key_: bytes, configuration: LLMConfiguration) -> str:
    """A team configuration's provider key from its row and its team's data key (no database access)."""
    if configuration.team_id is None:
        raise UnknownKeyId(configuration.key_id)
    return decrypt_team_key(data_key_, stored=configuration.api_key_encrypted, configuration_id=configuration.id,
                            team_id=configuration.team_id)


def encrypt_with_data_key(data_key_: bytes, team_key_id: str, configuration: LLMConfiguration, plaintext: str) -> None:
    """Set a team configuration's stored key (and key_id) to plaintext encrypted under the data key."""
    assert configuration.team_id is not None, "a personal configuration is encrypted by the key ring"
    configuration.api_key_encrypted = encrypt_team_key(
        data_key_, team_key_id=team_key_id, configuration_id=configuration.id, team_id=configuration.team_id,
        plaintext=plaintext)
    configuration.key_id = team_key_id


async def decrypt_configuration_key(session: AsyncSession, *, keyring: KeyRing,
                                    configuration: LLMConfiguration) -> str:
    """The plaintext provider key of any configuration, personal (ring) or team (its data key), for one upstream
    call; never store or log the result. Raises a CryptoError when it cannot be decrypted."""
    if configuration.team_id is None:
        return keyring.decrypt(configuration.api_key_encrypted,
                               binding=row_binding(configuration.id, configuration.user_id))
    key = await data_key(session, keyring=keyring, team_id=configuration.team_id, team_key_id=configuration.key_id)
    return decrypt_with_data_key(key, configuration)


async def shred_team_keys(session: AsyncSession, *, team_id: uuid.UUID) -> int:
    """Destroy every data key of the team (flushed): its configuration ciphertexts become undecryptable."""
    result = await session.execute(delete(TeamKey).where(TeamKey.team_id == team_id))
    await session.flush()
    return rows_affected(result)


async def rewrap_team_keys(session: AsyncSession, *, keyring: KeyRing) -> tuple[int, list[str]]:
    """Re-wrap every team data key not under the ring's primary key (no configuration is re-encrypted):
    (re-wrapped, ids that could not be unwrapped). Flushed, not committed."""
    rows = list((await session.execute(
        select(TeamKey).where(TeamKey.key_id != keyring.primary_id).order_by(TeamKey.id)
    )).scalars())
    done, failed = 0, []
    for row in rows:
        try:
            key = unwrap_data_key(keyring, team_id=row.team_id, wrapped=row.wrapped_key)
        except CryptoError:
            failed.append(row.id)
            continue
        ring_key_id, wrapped = wrap_data_key(keyring, team_id=row.team_id, data_key=key)
        result = await session.execute(
            update(TeamKey).where(TeamKey.id == row.id, TeamKey.wrapped_key == row.wrapped_key)
            .values(key_id=ring_key_id, wrapped_key=wrapped))
        done += rows_affected(result)
    await session.flush()
    return done, failed
