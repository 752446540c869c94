"""The configuration repository and its rules: encryption bound to the row, one default per user, keys that
are never lost to a placeholder, fallbacks that belong to their owner. Knows nothing of HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from yarl import URL

from gateway.configurations.providers import ProviderCatalog
from gateway.crypto.keyring import KeyRing, row_binding
from gateway.crypto.masking import is_placeholder, mask_key
from gateway.errors import BadRequest, Conflict, NotFound, Unprocessable
from gateway.ssrf import UnsafeURLError, UrlPolicy
from gateway.store.db import dialect_name, take_sqlite_write_lock
from gateway.store.models import LLMConfiguration, MemberDefault, TeamMember, User, utcnow
from gateway.validation import MAX_MODEL, MAX_NAME, check_text

MAX_KEY_LENGTH = 4096
# A NUL is never printable, so check_api_key refuses it as a key: this value can only mean "no key".
CLEARED_KEY = "\x00"
TEST_STATUSES = ("untested", "success", "failed", "rate_limited")


@dataclass(frozen=True)
class Policy:
    """What a configuration may be: the provider catalog, where its base URL may point, the per-user and
    per-team limits."""

    catalog: ProviderCatalog
    urls: UrlPolicy
    max_per_user: int = 100
    max_per_team: int = 100


def decrypt_key(keyring: KeyRing, configuration: LLMConfiguration) -> str:
    """The plaintext key, for one upstream call; never store or log the result."""
    binding = row_binding(configuration.id, configuration.user_id)
    return keyring.decrypt(configuration.api_key_encrypted, binding=binding)


def masked_key(keyring: KeyRing, configuration: LLMConfiguration) -> str:
    """The key as responses show it."""
    return mask_key(decrypt_key(keyring, configuration))


def _set_key(keyring: KeyRing, configuration: LLMConfiguration, plaintext: str) -> None:
    binding = row_binding(configuration.id, configuration.user_id)
    configuration.api_key_encrypted = keyring.encrypt(plaintext, binding=binding)
    configuration.key_id = keyring.primary_id


def check_api_key(value: str) -> str:
    """A real key: 1–4096 printable characters and not a mask or placeholder (422 otherwise)."""
    if not value or len(value) > MAX_KEY_LENGTH or not value.isprintable() or value != value.strip():
        raise Unprocessable("Invalid 'api_key': 1-4096 printable characters without surrounding spaces",
                            param="api_key")
    if is_placeholder(value):
        raise Unprocessable("Invalid 'api_key': a mask or placeholder is not a key; send the real key, or omit "
                            "the field to keep the stored one", param="api_key", code="placeholder_api_key")
    return value


def check_provider_and_url(policy: Policy, provider: str, base_url: str | None) -> str | None:
    """The provider must be in the catalog; the base URL obeys the SSRF policy; returns the normalised URL."""
    entry = policy.catalog.get(provider)
    if entry is None:
        raise Unprocessable(f"Invalid 'provider': unknown provider; use one of {', '.join(policy.catalog.ids())}",
                            param="provider")
    if base_url is None:
        if entry.requires_base_url:
            raise Unprocessable(f"Field 'base_url' is required for provider '{provider}'", param="base_url")
        return None
    try:
        return policy.urls.check_base_url(base_url)
    except UnsafeURLError as exc:
        raise Unprocessable(f"Invalid 'base_url': {exc}", param="base_url", code="unsafe_base_url") from None


def origin(policy: Policy, provider: str, base_url: str | None) -> tuple[str, str, int | None] | None:
    """Where a key is sent: scheme, host and port (default ports filled in) of the URL in effect."""
    effective = base_url or policy.catalog.default_base_url(provider)
    if effective is None:
        return None
    url = URL(effective)
    return url.scheme, (url.raw_host or "").lower(), url.port


def moves_key(policy: Policy, config: LLMConfiguration, *, provider: str, base_url: str | None) -> bool:
    """Whether saving this provider and (normalised) base URL would send the stored key to another address."""
    return provider != config.provider or origin(policy, provider, base_url) != origin(
        policy, config.provider, config.base_url)


async def list_user_configurations(session: AsyncSession, *, user_id: uuid.UUID) -> list[LLMConfiguration]:
    """All of a user's configurations, the default first, then by name."""
    query = (
        select(LLMConfiguration)
        .where(LLMConfiguration.user_id == user_id)
        .order_by(LLMConfiguration.is_default.desc(), LLMConfiguration.name)
    )
    return list((await session.execute(query)).scalars())


async def default_configuration(session: AsyncSession, *, user_id: uuid.UUID,
                                for_update: bool = False) -> LLMConfiguration | None:
    """The user's default configuration, if any."""
    query = select(LLMConfiguration).where(LLMConfiguration.user_id == user_id, LLMConfiguration.is_default.is_(True))
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def search_configurations(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    provider: str | None = None,
    q: str | None = None,
    status: str | None = None,
    is_active: bool | None = None,
    limit: int = 100,
    offset: int = 0,
    team_ids: Sequence[uuid.UUID] = (),
    personal: bool = True,
) -> tuple[list[LLMConfiguration], int]:
    """One page of a user's configurations matching the filters (default first, then by name) and the total;
    `team_ids` adds those teams' configurations (membership checked by the caller), `personal=False` drops the
    user's own."""
    owners = ([LLMConfiguration.user_id == user_id] if personal else []) + (
        [LLMConfiguration.team_id.in_(list(team_ids))] if team_ids else [])
    where: list[Any] = [or_(*owners) if owners else LLMConfiguration.id.is_(None)]
    if provider is not None:
        where.append(LLMConfiguration.provider == provider)
    if q:
        # autoescape: a '%' or '_' typed in the search box matches itself, not everything.
        where.append(or_(LLMConfiguration.name.icontains(q, autoescape=True),
                         LLMConfiguration.model.icontains(q, autoescape=True)))
    if status is not None:
        where.append(LLMConfiguration.test_status == status)
    if is_active is not None:
        where.append(LLMConfiguration.is_active.is_(is_active))
    total = (await session.execute(select(func.count()).select_from(LLMConfiguration).where(*where))).scalar_one()
    query = (
        select(LLMConfiguration).where(*where)
        .order_by(LLMConfiguration.is_default.desc(), func.lower(LLMConfiguration.name), LLMConfiguration.name,
                  LLMConfiguration.id)
        .limit(limit).offset(offset)
    )
    return list((await session.execute(query)).scalars()), total


@dataclass(frozen=True)
class Stats:
    """Counts over a user's configurations."""

    total: int
    active: int
    default_id: uuid.UUID | None
    by_status: dict[str, int]
    by_provider: dict[str, int]


async def configuration_stats(session: AsyncSession, *, user_id: uuid.UUID) -> Stats:
    """Totals, the default, and counts per test status and per provider."""
    rows = (await session.execute(
        select(LLMConfiguration.id, LLMConfiguration.provider, LLMConfiguration.test_status,
               LLMConfiguration.is_active, LLMConfiguration.is_default)
        .where(LLMConfiguration.user_id == user_id)
    )).all()
    by_status = dict.fromkeys(TEST_STATUSES, 0)
    by_provider: dict[str, int] = {}
    for row in rows:
        by_status[row.test_status] = by_status.get(row.test_status, 0) + 1
        by_provider[row.provider] = by_provider.get(row.provider, 0) + 1
    return Stats(
        total=len(rows),
        active=sum(1 for row in rows if row.is_active),
        default_id=next((row.id for row in rows if row.is_default), None),
        by_status=by_status,
        by_provider=dict(sorted(by_provider.items())),
    )


async def lock_user(session: AsyncSession, *, user_id: uuid.UUID) -> None:
    """Serialise one user's configuration writes; call it first, so every read after it sees fresh rows.

    Without it two simultaneous default switches can each clear the other's default (none left) or collide
    on the partial unique index, and two creates can both pass the per-user limit."""
    if dialect_name(session) == "sqlite":
        await take_sqlite_write_lock(session)
    else:
        # NO KEY UPDATE: still lets other transactions insert rows referencing the user (tokens, usage).
        await session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


async def get_configuration(
    session: AsyncSession, *, user_id: uuid.UUID, configuration_id: uuid.UUID | str, for_update: bool = False
) -> LLMConfiguration:
    """One of the caller's configurations; another user's id is a 404 exactly like an unknown one."""
    try:
        config_uuid = configuration_id if isinstance(configuration_id, uuid.UUID) else uuid.UUID(configuration_id)
    except ValueError:
        raise NotFound("No configuration with this id") from None
    query = select(LLMConfiguration).where(LLMConfiguration.id == config_uuid, LLMConfiguration.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None:
        raise NotFound("No configuration with this id")
    return found


def parse_fallbacks(own_id: uuid.UUID, fallback_ids: Sequence[Any]) -> tuple[list[str], set[uuid.UUID]]:
    """Fallback ids in order (normalised) and as a set: no repeats, not the configuration itself (422)."""
    ids = [str(f) for f in fallback_ids]
    if len(set(ids)) != len(ids):
        raise Unprocessable("Invalid 'fallback_ids': an id appears twice", param="fallback_ids")
    if str(own_id) in ids:
        raise Unprocessable("Invalid 'fallback_ids': a configuration cannot fall back to itself", param="fallback_ids")
    try:
        wanted = [uuid.UUID(i) for i in ids]
    except ValueError:
        raise Unprocessable("Invalid 'fallback_ids': not a configuration id", param="fallback_ids") from None
    return [str(i) for i in wanted], set(wanted)


async def _check_fallbacks(
    session: AsyncSession, *, user_id: uuid.UUID, own_id: uuid.UUID, fallback_ids: Sequence[str]
) -> list[str]:
    ids, wanted = parse_fallbacks(own_id, fallback_ids)
    if wanted:
        # The owner's own, or a configuration of a team the owner belongs to (the proxy skips it once they leave);
        # another user's or team's is refused exactly like an unknown id.
        teams = select(TeamMember.team_id).where(TeamMember.user_id == user_id)
        usable = set(
            (await session.execute(
                select(LLMConfiguration.id).where(
                    or_(LLMConfiguration.user_id == user_id, LLMConfiguration.team_id.in_(teams)),
                    LLMConfiguration.id.in_(wanted))
            )).scalars()
        )
        if usable != wanted:
            raise Unprocessable("Invalid 'fallback_ids': not one of your or your teams' configurations",
                                param="fallback_ids")
    return ids


async def _flush_unique(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        # PostgreSQL names the index, SQLite the columns ("... llm_configurations.user_id, llm_configurations.name").
        message = str(exc.orig)
        if "uq_llm_configurations_user_id_name" in message or "llm_configurations.name" in message:
            # The name is not repeated back: errors never echo what the client sent.
            raise Conflict(
                "You already have a configuration with this name", param="name", code="duplicate_name"
            ) from None
        raise Conflict("Another request changed the default at the same time; retry", code="default_conflict") from None


async def _clear_default(session: AsyncSession, *, user_id: uuid.UUID, keep: uuid.UUID) -> None:
    # One default per user, whichever kind: a team configuration chosen as default (member_defaults) goes too.
    await session.execute(delete(MemberDefault).where(MemberDefault.user_id == user_id))
    await session.execute(
        update(LLMConfiguration)
        .where(LLMConfiguration.user_id == user_id, LLMConfiguration.is_default.is_(True), LLMConfiguration.id != keep)
        .values(is_default=False, updated_at=utcnow())
    )
    await session.flush()


async def create_configuration(
    session: AsyncSession,
    *,
    keyring: KeyRing,
    policy: Policy,
    user_id: uuid.UUID,
    name: str,
    provider: str,
    model: str,
    api_key: str,
    base_url: str | None = None,
    is_default: bool | None = None,
    is_active: bool = True,
    fallback_ids: Iterable[str] = (),
    source_ref: str | None = None,
) -> LLMConfiguration:
    """Insert a configuration (flushed, not committed); a user's first one becomes the default."""
    check_text(name, param="name", max_length=MAX_NAME)
    check_text(model, param="model", max_length=MAX_MODEL)
    check_api_key(api_key)
    base_url = check_provider_and_url(policy, provider, base_url)
    await lock_user(session, user_id=user_id)
    count = (await session.execute(
        select(func.count()).select_from(LLMConfiguration).where(LLMConfiguration.user_id == user_id)
    )).scalar_one()
    if count >= policy.max_per_user:
        raise Conflict(f"You already have {count} configurations, the most allowed", code="too_many_configurations")
    config = LLMConfiguration(
        id=uuid.uuid4(), user_id=user_id, name=name, provider=provider, model=model, base_url=base_url,
        is_active=is_active, is_default=False, source_ref=source_ref, test_status="untested",
        # Every column set, so the object in the session is complete: a later bulk UPDATE (a test verdict)
        # synchronises loaded attributes only.
        test_message=None, test_latency_ms=None, tested_at=None, last_used_at=None,
        created_at=utcnow(), updated_at=utcnow(),
    )
    config.fallback_ids = await _check_fallbacks(
        session, user_id=user_id, own_id=config.id, fallback_ids=list(fallback_ids)
    )
    _set_key(keyring, config, api_key)
    # A user's first configuration is the default whatever was asked (unless a team configuration already is):
    # a user with keys but no default would get a 400 on every request that names no configuration.
    if is_default or (count == 0 and (await session.execute(
            select(MemberDefault.user_id).where(MemberDefault.user_id == user_id))).first() is None):
        await _clear_default(session, user_id=user_id, keep=config.id)
        config.is_default = True
    session.add(config)
    await _flush_unique(session)
    return config


UPDATABLE = ("name", "provider", "model", "base_url", "is_active", "fallback_ids")


def check_update(policy: Policy, config: LLMConfiguration, values: dict[str, Any], *, key_given: bool
             ) -> dict[str, Any]:
    """The update's values validated, the base URL normalised; a key move without the key is refused."""
    unknown = set(values) - set(UPDATABLE) - {"is_default"}
    if unknown:
        raise BadRequest(f"Field '{sorted(unknown)[0]}' cannot be updated", param=sorted(unknown)[0])
    for param, limit in (("name", MAX_NAME), ("model", MAX_MODEL)):
        if param in values:
            check_text(values[param], param=param, max_length=limit)
    if "provider" not in values and "base_url" not in values:
        return values
    provider = values.get("provider", config.provider)
    base_url = check_provider_and_url(policy, provider, values.get("base_url", config.base_url))
    # Moving a key is re-entering it: without this, anyone holding a gateway token could point a stored key at
    # a host they control and call Test.
    if not key_given and moves_key(policy, config, provider=provider, base_url=base_url):
        raise Unprocessable(
            "Field 'api_key' is required: changing the provider or the base URL's scheme, host or port sends "
            "the key to another address, so send the key again in the same request",
            param="api_key", code="key_required_for_new_origin")
    return {**values, "base_url": base_url}


async def update_configuration(
    session: AsyncSession,
    *,
    keyring: KeyRing,
    policy: Policy,
    user_id: uuid.UUID,
    configuration_id: uuid.UUID | str,
    values: dict[str, Any],
    api_key: str | None = None,
) -> tuple[LLMConfiguration, list[str]]:
    """Apply a partial update; `api_key` None, or the exact mask of the stored key, keeps the key.

    Returns the row and the names of the fields that changed (for the audit log; never values of keys)."""
    await lock_user(session, user_id=user_id)
    config = await get_configuration(session, user_id=user_id, configuration_id=configuration_id, for_update=True)
    changed: list[str] = []
    stored = decrypt_key(keyring, config)
    key_given = api_key is not None and api_key != masked_key(keyring, config)
    if api_key is not None and key_given:
        check_api_key(api_key)  # before the move check: a placeholder is no key re-entered
    if stored == CLEARED_KEY and not key_given and values.get("is_active") is True:
        raise Unprocessable("Field 'api_key' is required: this configuration's key was cleared, so it can be "
                            "turned on again only with a key", param="api_key", code="key_required")
    values = check_update(policy, config, values, key_given=key_given or stored == CLEARED_KEY)
    if api_key is not None and key_given and api_key != stored:
        _set_key(keyring, config, api_key)
        changed.append("api_key")
    if "fallback_ids" in values:
        values["fallback_ids"] = await _check_fallbacks(
            session, user_id=user_id, own_id=config.id, fallback_ids=values["fallback_ids"] or []
        )
    for name in UPDATABLE:
        if name in values and getattr(config, name) != values[name]:
            setattr(config, name, values[name])
            changed.append(name)
    if values.get("is_default") is True and not config.is_default:
        await _clear_default(session, user_id=user_id, keep=config.id)
        config.is_default = True
        changed.append("is_default")
    elif values.get("is_default") is False and config.is_default:
        config.is_default = False
        changed.append("is_default")
    if changed:
        config.updated_at = utcnow()
    await _flush_unique(session)
    return config, changed


async def set_default(
    session: AsyncSession, *, user_id: uuid.UUID, configuration_id: uuid.UUID | str
) -> LLMConfiguration:
    """Make one configuration the user's only default (one transaction, backed by the partial unique index)."""
    await lock_user(session, user_id=user_id)
    config = await get_configuration(session, user_id=user_id, configuration_id=configuration_id, for_update=True)
    await _clear_default(session, user_id=user_id, keep=config.id)
    if not config.is_default:
        config.is_default = True
        config.updated_at = utcnow()
    await _flush_unique(session)
    return config


async def configuration_names(
    session: AsyncSession, *, user_id: uuid.UUID, ids: Sequence[uuid.UUID] | None = None
) -> dict[uuid.UUID, str]:
    """id → name of the caller's configurations (among `ids` when given; others' ids are simply absent)."""
    query = select(LLMConfiguration.id, LLMConfiguration.name).where(LLMConfiguration.user_id == user_id)
    if ids is not None:
        query = query.where(LLMConfiguration.id.in_(list(ids)))
    return {row.id: row.name for row in await session.execute(query)}


async def delete_configurations(
    session: AsyncSession, *, user_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """Delete the caller's configurations among `ids`; drops them from others' fallbacks; returns what was deleted."""
    await lock_user(session, user_id=user_id)
    rows = list((await session.execute(
        select(LLMConfiguration).where(LLMConfiguration.user_id == user_id, LLMConfiguration.id.in_(list(ids)))
    )).scalars())
    gone = {str(r.id) for r in rows}
    lost_default = any(r.is_default for r in rows)
    for row in rows:
        await session.delete(row)
    if gone:
        remaining = await list_user_configurations(session, user_id=user_id)
        for other in remaining:
            if other.fallback_ids and gone & set(other.fallback_ids):
                other.fallback_ids = [f for f in other.fallback_ids if f not in gone]
        # A user who deletes the default keeps working: the first remaining active one (by name) takes over.
        successor = next((c for c in remaining if c.is_active), None)
        if lost_default and successor is not None:
            await session.flush()
            successor.is_default = True
    await session.flush()
    return [r.id for r in rows]
