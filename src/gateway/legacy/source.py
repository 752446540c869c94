"""Legacy single-key settings (OpenHands-shaped JSON: `llm_model`, `llm_api_key`, `llm_base_url`): where they
are read from, and which of them hold a key worth importing. Masks and empty keys are never keys."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from sqlalchemy import String, cast, column, select, table
from sqlalchemy.exc import SQLAlchemyError

from gateway.configurations.providers import FALLBACK_PROVIDER, ProviderCatalog
from gateway.crypto.masking import is_placeholder
from gateway.settings import Settings, normalise_database_url
from gateway.store.db import make_engine

# The operator API's rule for user names; a legacy id that breaks it is reported, not imported.
USER_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")
SETTINGS_FILE = "settings.json"
MAX_SETTINGS_BYTES = 1024 * 1024


class LegacySourceError(Exception):
    """The legacy source cannot be read; the message names the problem, never a URL or a key."""


@dataclass(frozen=True)
class LegacyRecord:
    """One user's legacy settings; `settings` is None when the stored value was not a JSON object."""

    user: str
    settings: dict[str, Any] | None


@dataclass(frozen=True)
class Verdict:
    """What a record holds: `kind` is `real`, `needs_reentry` or `skipped`; the key only when real."""

    kind: str
    reason: str | None = None
    model: str | None = None
    api_key: str | None = None
    base_url: str | None = None

    def __repr__(self) -> str:
        return f"Verdict(kind={self.kind!r}, reason={self.reason!r}, model={self.model!r})"


def _decode(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
    if isinstance(raw, (str, bytes)):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
    return raw if isinstance(raw, dict) else None


def classify(settings: dict[str, Any]) -> Verdict:
    """Sort one settings object: a real key to import, a key that must be re-entered, or nothing to migrate."""
    model = settings.get("llm_model")
    model = model.strip() if isinstance(model, str) and model.strip() else None
    base_url = settings.get("llm_base_url")
    base_url = base_url.strip() if isinstance(base_url, str) and base_url.strip() else None
    key = settings.get("llm_api_key")
    if "llm_api_key" not in settings:
        reason = "missing"
    elif key is None:
        reason = "null"
    elif not isinstance(key, str):
        reason = "not_a_string"
    elif not key.strip():
        reason = "empty"
    elif is_placeholder(key):
        reason = "masked"
    else:
        reason = None
    if model is None:
        return Verdict("skipped", "no llm_model" if reason is None else "no llm settings")
    if reason is not None or not isinstance(key, str):
        return Verdict("needs_reentry", reason or "not_a_string", model=model, base_url=base_url)
    # A stored key never legitimately starts or ends with whitespace: a pasted newline is not part of it.
    return Verdict("real", model=model, api_key=key.strip(), base_url=base_url)


def split_model(catalog: ProviderCatalog, legacy_model: str) -> tuple[str, str]:
    """(provider, model) for a litellm-style model string: `anthropic/claude-x` → (anthropic, claude-x).

    A bare name asks litellm, whose first import takes seconds: call it off the event loop (`asyncio.to_thread`)."""
    provider_id = catalog.infer_provider(legacy_model)
    head, slash, rest = legacy_model.partition("/")
    provider = catalog.get(provider_id)
    if slash and rest and provider is not None and (
        head.lower() in {provider.id, provider.litellm_provider, *provider.litellm_aliases}
    ):
        return provider_id, rest
    return provider_id, legacy_model


def join_model(catalog: ProviderCatalog, provider_id: str, model: str) -> str:
    """The litellm-style string an old client expects: `anthropic/claude-x`; OpenAI models stay bare."""
    provider = catalog.get(provider_id)
    if provider is None or provider_id == FALLBACK_PROVIDER:
        return model
    return f"{provider.litellm_provider}/{model}"


class LegacySource(Protocol):
    """Where legacy settings live."""

    def describe(self) -> str:
        """A label for reports and the audit log (no credentials)."""
        ...

    def records(self) -> AsyncIterator[LegacyRecord]:
        """Every user's settings."""
        ...

    async def find(self, user: str) -> LegacyRecord | None:
        """One user's settings, or None."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class DatabaseSource:
    """Rows of `user_settings(user_id, settings)` in a PostgreSQL or SQLite database."""

    def __init__(self, url: str, table_name: str = "user_settings") -> None:
        try:
            self._engine = make_engine(normalise_database_url(url))
        except (ValueError, SQLAlchemyError) as exc:
            raise LegacySourceError(f"legacy database URL: {exc}") from None
        schema, _, name = table_name.rpartition(".")
        self._table = table(name, column("user_id"), column("settings"), schema=schema or None)
        self._label = f"table {table_name}"

    def describe(self) -> str:
        return self._label

    async def _rows(self, user: str | None = None) -> list[LegacyRecord]:
        user_id = cast(self._table.c.user_id, String)
        query = select(user_id, self._table.c.settings).order_by(user_id)
        if user is not None:
            query = query.where(user_id == user)
        try:
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        except (SQLAlchemyError, OSError) as exc:
            raise LegacySourceError(f"cannot read the legacy {self._label}: {exc.__class__.__name__}") from None
        return [LegacyRecord(user=str(uid), settings=_decode(raw)) for uid, raw in rows]

    async def records(self) -> AsyncIterator[LegacyRecord]:
        for record in await self._rows():
            yield record

    async def find(self, user: str) -> LegacyRecord | None:
        rows = await self._rows(user)
        return rows[0] if rows else None

    async def close(self) -> None:
        await self._engine.dispose()


class FileSource:
    """A folder of settings files: `DIR/<user>/settings.json` or `DIR/<user>.json`."""

    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise LegacySourceError(f"legacy settings folder {directory} does not exist")
        self._dir = directory

    def describe(self) -> str:
        return f"folder {self._dir}"

    @staticmethod
    def _read(path: Path, user: str) -> LegacyRecord:
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_SETTINGS_BYTES + 1)
        except OSError as exc:
            raise LegacySourceError(f"cannot read {path}: {exc.strerror}") from None
        return LegacyRecord(user=user, settings=_decode(raw) if len(raw) <= MAX_SETTINGS_BYTES else None)

    async def records(self) -> AsyncIterator[LegacyRecord]:
        for entry in sorted(self._dir.iterdir()):
            if entry.is_dir() and (entry / SETTINGS_FILE).is_file():
                yield self._read(entry / SETTINGS_FILE, entry.name)
            elif entry.is_file() and entry.suffix == ".json":
                yield self._read(entry, entry.stem)

    async def find(self, user: str) -> LegacyRecord | None:
        if not USER_NAME_RE.match(user) or user.startswith("."):
            return None  # never a path outside the folder
        for path in (self._dir / user / SETTINGS_FILE, self._dir / f"{user}.json"):
            if path.is_file():
                return self._read(path, user)
        return None

    async def close(self) -> None:
        return None


def open_source(*, db_url: str | None = None, table_name: str = "user_settings",
                directory: Path | None = None) -> LegacySource:
    """A source from explicit options (CLI, admin API); exactly one of db_url and directory."""
    if (db_url is None) == (directory is None):
        raise LegacySourceError("give exactly one legacy source: a database URL or a folder")
    if directory is not None:
        return FileSource(Path(directory))
    return DatabaseSource(db_url or "", table_name)


def configured_source(settings: Settings) -> LegacySource | None:
    """The source named by the settings, if any."""
    if settings.legacy_source_db_url is not None:
        return DatabaseSource(settings.legacy_source_db_url.get_secret_value(), settings.legacy_table)
    if settings.legacy_source_dir is not None:
        return FileSource(settings.legacy_source_dir)
    return None
