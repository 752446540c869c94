"""Schema management through Alembic, the only owner of the schema.

Alembic is imported only when a migration runs: `serve` on an up-to-date database compares the stored revision
with HEAD_REVISION (kept equal to Alembic's head by a test) without paying for the import.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

# Inside the package, so a wheel install carries them (tests/gateway/test_packaging.py builds one and serves).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The newest revision in migrations/versions; tests/store/test_migrations.py keeps it honest.
HEAD_REVISION = "0008"


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointed at our migrations and the given database."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision` (blocking: call before the event loop or from a thread)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Revert migrations down to `revision` (blocking)."""
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    """The newest revision in migrations/, as Alembic reads it."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    async with engine.connect() as conn:
        try:
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()
        except DBAPIError:
            return None


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """`upgrade` from inside a running event loop."""
    await asyncio.to_thread(upgrade, database_url, revision)
