"""Team configurations: created and shared in by owners (keys encrypted under the team's data key), seen by
members with masked keys, edited, tested and deleted under the roles. Knows nothing of HTTP.

Which configuration a user may reach is `accessible()`: their own, or one of a team they belong to; anything
else (another user's, another team's, an unknown id) is the same 404."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.configurations.crud import (
    CLEARED_KEY,
    UPDATABLE,
    Policy,
    check_api_key,
    check_provider_and_url,
    check_update,
    decrypt_key,
    parse_fallbacks,
)
from gateway.crypto.keyring import KeyRing
from gateway.crypto.masking import mask_key
from gateway.crypto.team_keys import current_team_key, data_key, decrypt_with_data_key, encrypt_with_data_key
from gateway.errors import Conflict, Forbidden, NotFound, Unprocessable
from gateway.store.models import ConversationConfiguration, LLMConfiguration, utcnow
from gateway.teams.membership import Membership, lock_team, membership, memberships, parse_id
from gateway.validation import MAX_MODEL, MAX_NAME, check_text

NO_CONFIGURATION = "No configuration with this id"


@dataclass(frozen=True)
class Access:
    """A configuration the caller may reach, and how: `team` is None for the caller's own."""

    configuration: LLMConfiguration
    team: Membership | None

    @property
    def may_edit(self) -> bool:
        """Own configurations, and a team's for its owners."""
        return self.team is None or self.team.is_owner

    def require_edit(self) -> None:
        """403 for a member trying an owner's action on a team configuration."""
        if not self.may_edit:
            raise Forbidden("Only an owner of the team may change its configurations", code="team_owner_required")


async def accessible(session: AsyncSession, *, user_id: uuid.UUID, configuration_id: uuid.UUID | str,
                     for_update: bool = False) -> Access:
    """The caller's own configuration, or one of a team the caller belongs to; 404 for anything else."""
    config_id = parse_id(configuration_id, missing=NO_CONFIGURATION)
    query = select(LLMConfiguration).where(LLMConfiguration.id == config_id)
    if for_update:
        query = query.with_for_update()
    config = (await session.execute(query)).scalar_one_or_none()
    if config is not None and config.user_id == user_id:
        return Access(config, None)
    if config is not None and config.team_id is not None:
        teams = await memberships(session, user_id=user_id)
        if config.team_id in teams:
            return Access(config, teams[config.team_id])
    raise NotFound(NO_CONFIGURATION)


class KeyReader:
    """Decrypts the keys of a batch of rows, loading each team data key once (for lists and exports)."""

    def __init__(self, session: AsyncSession, keyring: KeyRing) -> None:
        self.session = session
        self.keyring = keyring
        self._data_keys: dict[str, bytes] = {}

    async def plaintext(self, config: LLMConfiguration) -> str:
        """The key of a personal or team configuration; never store or log it."""
        if config.team_id is None:
            return decrypt_key(self.keyring, config)
        key = self._data_keys.get(config.key_id)
        if key is None:
            key = await data_key(self.session, keyring=self.keyring, team_id=config.team_id,
                                 team_key_id=config.key_id)
            self._data_keys[config.key_id] = key
        return decrypt_with_data_key(key, config)

    async def masked(self, config: LLMConfiguration) -> str:
        """The key as responses show it."""
        return mask_key(await self.plaintext(config))


async def set_team_key(session: AsyncSession, keyring: KeyRing, config: LLMConfiguration, plaintext: str) -> None:
    assert config.team_id is not None
    team_key_id, key = await current_team_key(session, keyring=keyring, team_id=config.team_id)
    encrypt_with_data_key(key, team_key_id, config, plaintext)


async def _check_team_fallbacks(session: AsyncSession, *, team_id: uuid.UUID, own_id: uuid.UUID,
                                fallback_ids: Sequence[Any]) -> list[str]:
    """A team configuration falls back only to configurations of the same team (anything else: 404)."""
    ids, wanted = parse_fallbacks(own_id, fallback_ids)
    if wanted:
        found = set((await session.execute(select(LLMConfiguration.id).where(
            LLMConfiguration.team_id == team_id, LLMConfiguration.id.in_(wanted)))).scalars())
        if found != wanted:
            raise NotFound("Invalid 'fallback_ids': no configuration of this team with such an id",
                           param="fallback_ids")
    return ids


async def _flush_team_unique(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict("The team already has a configuration with this name", param="name",
                       code="duplicate_name") from None


async def _check_room(session: AsyncSession, *, team_id: uuid.UUID, max_per_team: int) -> None:
    """409 when the team holds `max_per_team` configurations. Takes the team's lock first (SQLite ignores FOR
    UPDATE): two additions at once must not both count the same rows."""
    await lock_team(session, team_id=team_id)
    count = (await session.execute(select(func.count()).select_from(LLMConfiguration).where(
        LLMConfiguration.team_id == team_id))).scalar_one()
    if count >= max_per_team:
        raise Conflict(f"The team already has {count} configurations, the most allowed (MAX_CONFIGURATIONS_PER_TEAM)",
                       code="too_many_configurations")


async def create_team_configuration(
    session: AsyncSession, *, keyring: KeyRing, policy: Policy, user_id: uuid.UUID, team_id: uuid.UUID | str,
    name: str, provider: str, model: str, api_key: str, base_url: str | None = None, is_active: bool = True,
    fallback_ids: Iterable[str] = (),
) -> tuple[LLMConfiguration, Membership]:
    """A new configuration of the team (owners), its key under the team's data key (flushed, not committed)."""
    check_text(name, param="name", max_length=MAX_NAME)
    check_text(model, param="model", max_length=MAX_MODEL)
    check_api_key(api_key)
    base_url = check_provider_and_url(policy, provider, base_url)
    member = await membership(session, user_id=user_id, team_id=team_id, owner=True, for_update=True)
    await _check_room(session, team_id=member.team.id, max_per_team=policy.max_per_team)
    now = utcnow()
    config = LLMConfiguration(
        id=uuid.uuid4(), user_id=None, team_id=member.team.id, name=name, provider=provider, model=model,
        base_url=base_url, is_active=is_active, is_default=False, source_ref=None, test_status="untested",
        test_message=None, test_latency_ms=None, tested_at=None, last_used_at=None, created_at=now, updated_at=now,
    )
    config.fallback_ids = await _check_team_fallbacks(session, team_id=member.team.id, own_id=config.id,
                                                      fallback_ids=list(fallback_ids))
    await set_team_key(session, keyring, config, api_key)
    session.add(config)
    await _flush_team_unique(session)
    return config, member


async def share_configuration(
    session: AsyncSession, *, keyring: KeyRing, user_id: uuid.UUID, team_id: uuid.UUID | str,
    configuration_id: uuid.UUID | str, name: str | None = None, max_per_team: int = 100,
) -> tuple[LLMConfiguration, LLMConfiguration, Membership]:
    """Copy one of the caller's own configurations into the team (owners): the key is decrypted and re-encrypted
    under the team's data key here, never sent anywhere. (copy, source, membership); flushed, not committed."""
    member = await membership(session, user_id=user_id, team_id=team_id, owner=True, for_update=True)
    source = (await session.execute(select(LLMConfiguration).where(
        LLMConfiguration.id == parse_id(configuration_id, missing=NO_CONFIGURATION),
        LLMConfiguration.user_id == user_id,
    ))).scalar_one_or_none()
    if source is None:
        raise NotFound(NO_CONFIGURATION, param="configuration_id")
    if name is not None:
        check_text(name, param="name", max_length=MAX_NAME)
    plaintext = decrypt_key(keyring, source)
    if plaintext == CLEARED_KEY:
        raise Unprocessable("This configuration's key was cleared; it has no key to share", param="configuration_id",
                            code="key_required")
    await _check_room(session, team_id=member.team.id, max_per_team=max_per_team)
    now = utcnow()
    copy = LLMConfiguration(
        id=uuid.uuid4(), user_id=None, team_id=member.team.id, name=name or source.name, provider=source.provider,
        model=source.model, base_url=source.base_url, is_active=source.is_active, is_default=False,
        fallback_ids=[], source_ref=None, test_status="untested", test_message=None, test_latency_ms=None,
        tested_at=None, last_used_at=None, created_at=now, updated_at=now,
    )
    await set_team_key(session, keyring, copy, plaintext)
    session.add(copy)
    await _flush_team_unique(session)
    return copy, source, member


async def update_team_configuration(
    session: AsyncSession, *, keyring: KeyRing, policy: Policy, access: Access, values: dict[str, Any],
    api_key: str | None = None,
) -> list[str]:
    """Apply an owner's partial update to a team configuration (flushed); the names of the fields changed."""
    access.require_edit()
    config = access.configuration
    reader = KeyReader(session, keyring)
    stored = await reader.plaintext(config)
    key_given = api_key is not None and api_key != mask_key(stored)
    if api_key is not None and key_given:
        check_api_key(api_key)
    if stored == CLEARED_KEY and not key_given and values.get("is_active") is True:
        raise Unprocessable("Field 'api_key' is required: this configuration has no key, so it can be turned on "
                            "only with a key", param="api_key", code="key_required")
    values = check_update(policy, config, values, key_given=key_given or stored == CLEARED_KEY)
    changed: list[str] = []
    if api_key is not None and key_given and api_key != stored:
        await set_team_key(session, keyring, config, api_key)
        changed.append("api_key")
    if "fallback_ids" in values:
        assert config.team_id is not None
        values["fallback_ids"] = await _check_team_fallbacks(session, team_id=config.team_id, own_id=config.id,
                                                             fallback_ids=values["fallback_ids"] or [])
    for field in UPDATABLE:
        if field in values and getattr(config, field) != values[field]:
            setattr(config, field, values[field])
            changed.append(field)
    if changed:
        config.updated_at = utcnow()
    await _flush_team_unique(session)
    return changed


async def delete_team_configuration(session: AsyncSession, *, access: Access) -> None:
    """Delete a team configuration (owners); it leaves the team's other configurations' fallbacks."""
    access.require_edit()
    config = access.configuration
    gone = str(config.id)
    others = (await session.execute(select(LLMConfiguration).where(
        LLMConfiguration.team_id == config.team_id, LLMConfiguration.id != config.id))).scalars()
    for other in others:
        if other.fallback_ids and gone in other.fallback_ids:
            other.fallback_ids = [f for f in other.fallback_ids if f != gone]
    await session.delete(config)
    await session.flush()


async def list_team_configurations(session: AsyncSession, *, user_id: uuid.UUID, team_id: uuid.UUID | str
                                   ) -> tuple[list[LLMConfiguration], Membership]:
    """The team's configurations by name (members and owners)."""
    member = await membership(session, user_id=user_id, team_id=team_id)
    rows = (await session.execute(select(LLMConfiguration).where(LLMConfiguration.team_id == member.team.id)
                                  .order_by(func.lower(LLMConfiguration.name), LLMConfiguration.id))).scalars()
    return list(rows), member


async def drop_member_bindings(session: AsyncSession, *, team_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """A removed member's conversations no longer resolve to the team's configurations."""
    team_configs = select(LLMConfiguration.id).where(LLMConfiguration.team_id == team_id)
    await session.execute(delete(ConversationConfiguration).where(
        ConversationConfiguration.user_id == user_id,
        ConversationConfiguration.configuration_id.in_(team_configs)))


def visible_to(user_id: uuid.UUID, team_ids: Iterable[uuid.UUID]) -> Any:
    """The WHERE clause of every configuration a user may reach: their own and their teams'."""
    teams = list(team_ids)
    if not teams:
        return LLMConfiguration.user_id == user_id
    return or_(LLMConfiguration.user_id == user_id, LLMConfiguration.team_id.in_(teams))
