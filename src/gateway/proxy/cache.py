"""Per-user caches of configurations (keys still encrypted) and conversation bindings, so the hot path never
queries the database; every change on the ChangeBus drops what it touched."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.configurations.conversations import bound_configuration_id
from gateway.configurations.providers import ProviderCatalog
from gateway.crypto.keyring import row_binding
from gateway.ssrf import UrlPolicy
from gateway.store.changes import Change
from gateway.store.models import LLMConfiguration
from gateway.teams.membership import CHANGE_KIND as TEAM_CHANGE
from gateway.teams.usable import Usable, usable_configurations

WIRE_UNKNOWN = "unknown"
# What one binding costs besides its conversation id's string: the key tuple, the entry tuple, the dict and set
# slots, the user's id (measured with tracemalloc on CPython 3.11: about 290 bytes; rounded up).
BINDING_OVERHEAD_BYTES = 400
# A conversation not bound yet may be bound by another process whose notice is lost: ask again after a while.
MISS_TTL_S = 60.0
NOT_CACHED = object()


@dataclass(frozen=True, slots=True)
class CachedConfiguration:
    """What the proxy needs of one configuration; `api_key_encrypted` is decrypted per request only."""

    id: uuid.UUID
    id_str: str
    user_id: uuid.UUID | None  # None for a team's configuration
    name: str
    provider: str
    model: str
    api_key_encrypted: str
    base_url: str | None  # the configuration's own, or the provider's default; no trailing slash
    wire: str  # "openai" (bytes), "anthropic"... (litellm), or WIRE_UNKNOWN when the catalog lacks the provider
    litellm_provider: str
    is_default: bool
    is_active: bool
    fallback_ids: tuple[str, ...]
    created: int  # unix seconds, as /v1/models shows it
    binding: bytes  # the associated data its ciphertext is bound to
    refusal: str | None  # why the SSRF policy refuses its base_url (scheme, IP literal), None when allowed
    team: CachedTeam | None = None  # set for a team's configuration

    @property
    def label(self) -> str:
        """The name a caller selects it by: its own name, or `<team>/<name>` for a team's."""
        return self.name if self.team is None else f"{self.team.name}/{self.name}"


@dataclass(frozen=True, slots=True)
class CachedTeam:
    """The team of a team configuration, and the team data key (wrapped by the ring, still) its key is under."""

    id: uuid.UUID
    name: str
    wrapped_key: str | None  # None when the team key is gone: the configuration's key cannot be decrypted


@dataclass(frozen=True, slots=True)
class UserConfigurations:
    """The configurations one user may use, indexed the ways selection looks them up: `by_id` holds their own
    and their teams'; `by_name` their own by name and their teams' by `<team>/<name>` (a team name has no '/',
    so an unqualified name never reaches a team's; one lookup either way)."""

    by_id: dict[str, CachedConfiguration]
    by_name: dict[str, CachedConfiguration]
    default: CachedConfiguration | None
    held: frozenset[str] = frozenset()  # team names given up (renamed, deleted): their labels answer 404

    def active(self) -> list[CachedConfiguration]:
        """Active configurations, by the name they are selected by."""
        return sorted((c for c in self.by_id.values() if c.is_active), key=lambda c: c.label)


def to_cached(row: LLMConfiguration, catalog: ProviderCatalog, *, urls: UrlPolicy,
              team: CachedTeam | None = None) -> CachedConfiguration:
    """A cache entry for one row (of `team`, when given): its upstream resolved through the catalog and checked
    against the policy."""
    provider = catalog.get(row.provider)
    base_url = row.base_url or (provider.base_url if provider is not None else None)
    return CachedConfiguration(
        id=row.id,
        id_str=str(row.id),
        user_id=row.user_id,
        name=row.name,
        provider=row.provider,
        model=row.model,
        api_key_encrypted=row.api_key_encrypted,
        base_url=base_url.rstrip("/") if base_url else None,
        wire=provider.wire if provider is not None else WIRE_UNKNOWN,
        litellm_provider=provider.litellm_provider if provider is not None else row.provider,
        is_default=row.is_default,
        is_active=row.is_active,
        fallback_ids=tuple(str(f) for f in row.fallback_ids or ()),
        created=int(row.created_at.timestamp()),
        # A team row's ciphertext is bound under its team's data key (gateway.crypto.envelope), not the ring's.
        binding=row_binding(row.id, row.user_id) if row.user_id is not None else b"",
        refusal=urls.refusal(base_url),
        team=team,
    )


def index(configurations: list[CachedConfiguration], team_configurations: list[CachedConfiguration] | None = None,
          *, member_default_id: uuid.UUID | None = None, held: frozenset[str] = frozenset()) -> UserConfigurations:
    """Index a user's own configurations by id and name, their teams' by id and `<team>/<name>`; the default is
    their own flagged one, else the team configuration they chose."""
    by_id = {c.id_str: c for c in configurations}
    default = next((c for c in configurations if c.is_default), None)
    if not team_configurations:
        return UserConfigurations(by_id=by_id, by_name={c.name: c for c in configurations}, default=default,
                                  held=held)
    by_id.update((c.id_str, c) for c in team_configurations)
    if default is None and member_default_id is not None:
        default = by_id.get(str(member_default_id))
    # Own names last: an own name spelt like `<team>/<name>` keeps meaning the caller's own.
    by_name = {c.label: c for c in team_configurations} | {c.name: c for c in configurations}
    return UserConfigurations(by_id=by_id, by_name=by_name, default=default, held=held)


def snapshot(usable: Usable, catalog: ProviderCatalog, *, urls: UrlPolicy) -> UserConfigurations:
    """The cache entry of one user from what they may use."""
    own = [to_cached(row, catalog, urls=urls) for row in usable.own]
    if not usable.teams:
        return index(own, held=usable.held)
    shared = [to_cached(t.row, catalog, urls=urls, team=CachedTeam(
        id=t.row.team_id, name=t.team_name, wrapped_key=t.team_key.wrapped_key if t.team_key else None,
    )) for t in usable.team_rows if t.row.team_id is not None]
    return index(own, shared, member_default_id=usable.member_default_id, held=usable.held)


class BindingCache:
    """(user, conversation) → configuration id, or None for a known miss; least recently used entries go first
    once their estimated size passes `max_bytes` (clients choose conversation ids: memory must not follow them)."""

    def __init__(self, max_bytes: int, *, miss_ttl_s: float = MISS_TTL_S) -> None:
        self.max_bytes = max_bytes
        self.miss_ttl_s = miss_ttl_s
        self.bytes = 0
        # value, expiry on time.monotonic() (inf for a binding: changes drop those), estimated size
        self._entries: OrderedDict[tuple[uuid.UUID, str], tuple[uuid.UUID | None, float, int]] = OrderedDict()
        self._by_user: dict[uuid.UUID, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: uuid.UUID, conversation_id: str) -> uuid.UUID | object | None:
        """The cached answer, or NOT_CACHED."""
        key = (user_id, conversation_id)
        entry = self._entries.get(key)
        if entry is None:
            return NOT_CACHED
        if entry[1] < time.monotonic():
            self._remove(key)
            return NOT_CACHED
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, user_id: uuid.UUID, conversation_id: str, value: uuid.UUID | None) -> None:
        """Remember an answer (a miss for miss_ttl_s only), evicting the least recently used past max_bytes."""
        key = (user_id, conversation_id)
        if key in self._entries:
            self._remove(key)
        size = sys.getsizeof(conversation_id) + BINDING_OVERHEAD_BYTES
        if size > self.max_bytes:
            return
        expiry = float("inf") if value is not None else time.monotonic() + self.miss_ttl_s
        self._entries[key] = (value, expiry, size)
        self._by_user.setdefault(user_id, set()).add(conversation_id)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._remove(next(iter(self._entries)))

    def drop_user(self, user_id: uuid.UUID) -> None:
        """Forget a user's bindings."""
        for conversation_id in list(self._by_user.get(user_id, ())):
            self._remove((user_id, conversation_id))

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._by_user.clear()
        self.bytes = 0

    def _remove(self, key: tuple[uuid.UUID, str]) -> None:
        _, _, size = self._entries.pop(key)
        self.bytes -= size
        conversations = self._by_user[key[0]]
        conversations.discard(key[1])
        if not conversations:
            del self._by_user[key[0]]


class ConfigurationCache:
    """user → configurations and (user, conversation) → configuration id, loaded on first use."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], catalog: ProviderCatalog, *,
                 urls: UrlPolicy, binding_bytes: int) -> None:
        self._sessionmaker = sessionmaker
        self._catalog = catalog
        self._urls = urls
        # By UUID.int, as the in-flight loads: a UUID's own hash is a Python method, and this is asked every request.
        self._users: dict[int, UserConfigurations] = {}
        self.bindings = BindingCache(binding_bytes)
        self._loads: dict[int, asyncio.Task[UserConfigurations]] = {}
        # Bumped by every change: a load that started before a change must not store what it read.
        self._generation = 0

    def cached(self, user_id: uuid.UUID) -> UserConfigurations | None:
        """The user's configurations if in memory (no coroutine: the hot path asks this first)."""
        return self._users.get(user_id.int)

    async def configurations(self, user_id: uuid.UUID) -> UserConfigurations:
        """The user's configurations, from memory or loaded once."""
        key = user_id.int
        cached = self._users.get(key)
        if cached is not None:
            return cached
        load = self._loads.get(key)
        if load is None:
            # One query shared by concurrent callers; shielded so a caller that goes away does not cancel it.
            load = asyncio.get_running_loop().create_task(self._load(user_id))
            self._loads[key] = load
            load.add_done_callback(lambda _: self._loads.pop(key, None))
        return await asyncio.shield(load)

    async def _load(self, user_id: uuid.UUID) -> UserConfigurations:
        generation = self._generation
        async with self._sessionmaker() as session:
            usable = await usable_configurations(session, user_id=user_id)
        loaded = snapshot(usable, self._catalog, urls=self._urls)
        if generation == self._generation:
            self._users[user_id.int] = loaded
        return loaded

    async def binding(self, user_id: uuid.UUID, conversation_id: str) -> uuid.UUID | None:
        """The configuration id a conversation is bound to, or None; misses are cached for a while too."""
        cached = self.bindings.get(user_id, conversation_id)
        if cached is not NOT_CACHED:
            return cached  # type: ignore[return-value]  # NOT_CACHED is ruled out just above
        generation = self._generation
        async with self._sessionmaker() as session:
            found = await bound_configuration_id(session, user_id=user_id, conversation_id=conversation_id)
        if generation == self._generation:
            self.bindings.put(user_id, conversation_id, found)
        return found

    def on_change(self, change: Change) -> None:
        """Drop whatever a change may have made stale."""
        self._generation += 1
        if change.kind == "all" or (change.user_id is None and change.kind in ("configurations", "conversations",
                                                                                "users")):
            self._users.clear()
            self.bindings.clear()
            return
        # A `teams` change names a user whose teams changed (membership, a team's configurations, name or key).
        if change.kind not in ("configurations", "conversations", "users", TEAM_CHANGE):
            return
        try:
            user_id = uuid.UUID(str(change.user_id))
        except ValueError:
            self.on_change(Change("all"))
            return
        if change.kind in ("configurations", "users", TEAM_CHANGE):
            self._users.pop(user_id.int, None)
        if change.kind in ("conversations", "users"):
            self.bindings.drop_user(user_id)
