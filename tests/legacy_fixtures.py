"""A legacy `user_settings` table on each backend: a SQLite file beside the test, or a uniquely named table in
the test's PostgreSQL database (dropped afterwards, so the schema check of other tests never sees it)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from gateway.store.db import make_engine
from tests.leakwatch import LeakWatch, watched

REAL_KEYS = {"alice": "sk-ant-alice-real-key-0123456789", "gina": "sk-proj-gina-real-key-9876543210"}
# The legacy table keeps these in clear by design: the DB driver's and SQLAlchemy's DEBUG records of reading and
# writing it show them (issue 12 §2 pins those loggers); anywhere else they are leaks.
DRIVER_LOGGERS = ("aiosqlite", "asyncpg", "sqlalchemy.engine")
LEGACY_ROWS: dict[str, Any] = {
    "alice": {"llm_model": "anthropic/claude-3-5-sonnet-20241022", "llm_api_key": REAL_KEYS["alice"],
              "llm_base_url": None, "language": "en", "confirmation_mode": True},
    "gina": {"llm_model": "gpt-4o", "llm_api_key": REAL_KEYS["gina"] + "\n", "llm_base_url": ""},
    "bob": {"llm_model": "gpt-4o", "llm_api_key": "**********"},
    "frank": {"llm_model": "gpt-4o", "llm_api_key": "<hidden>"},
    "carol": {"llm_model": "gpt-4o", "llm_api_key": ""},
    "erin": {"llm_model": "gpt-4o", "llm_api_key": "   "},
    "ivan": {"llm_model": "gpt-4o", "llm_api_key": None},
    "dave": {"llm_model": "gpt-4o"},
    "judy": {"language": "fr"},
    "hank": "this is not json",
}
NEEDS_REENTRY = {"bob": "masked", "frank": "masked", "carol": "empty", "erin": "empty", "ivan": "null",
                 "dave": "missing"}


@dataclass(frozen=True)
class LegacyTable:
    url: str
    table: str


def _raw(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@pytest.fixture
async def legacy_table(database_url: str, tmp_path: Path, key_watch: LeakWatch) -> AsyncIterator[LegacyTable]:
    """LEGACY_ROWS in a user_settings-shaped table (JSONB settings on PostgreSQL, TEXT on SQLite)."""
    key_watch.allow_in_logs(DRIVER_LOGGERS, {watched(key, "tests/legacy_fixtures.py") for key in REAL_KEYS.values()})
    if database_url.startswith("sqlite"):
        url, name, column = f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}", "user_settings", "TEXT"
    else:
        url, name, column = database_url, f"user_settings_{uuid.uuid4().hex[:8]}", "TEXT"
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {name} (user_id VARCHAR(100) PRIMARY KEY, settings {column})"))
        for user, value in LEGACY_ROWS.items():
            await conn.execute(text(f"INSERT INTO {name} (user_id, settings) VALUES (:u, :s)"),
                               {"u": user, "s": _raw(value)})
    try:
        yield LegacyTable(url=url, table=name)
    finally:
        if not database_url.startswith("sqlite"):
            async with engine.begin() as conn:
                await conn.execute(text(f"DROP TABLE {name}"))
        await engine.dispose()


def write_legacy_files(directory: Path, rows: dict[str, Any]) -> Path:
    """The same settings as files: `<user>/settings.json` for some users, `<user>.json` for the others."""
    directory.mkdir(parents=True, exist_ok=True)
    for n, (user, value) in enumerate(rows.items()):
        if n % 2:
            (directory / f"{user}.json").write_text(_raw(value))
        else:
            (directory / user).mkdir()
            (directory / user / "settings.json").write_text(_raw(value))
    return directory
