"""Alembic owns the schema: every migration upgrades and downgrades on SQLite and PostgreSQL, and the models
match what the migrations build."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.pool import NullPool

from gateway.store import migrate
from gateway.store.db import make_engine
from gateway.store.models import Base


def _tables(url: str) -> set[str]:
    async def run() -> set[str]:
        engine = make_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _all_revisions() -> list[str]:
    script = ScriptDirectory.from_config(migrate.alembic_config(""))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def test_each_migration_upgrades_and_downgrades(database_url: str) -> None:
    # database_url arrives at head; walk all the way down and back up one revision at a time.
    revisions = _all_revisions()
    assert _tables(database_url) >= set(Base.metadata.tables)
    migrate.downgrade(database_url, "base")
    assert _tables(database_url) <= {"alembic_version"}
    for revision in revisions:
        migrate.upgrade(database_url, revision)
        migrate.downgrade(database_url, "-1")
        migrate.upgrade(database_url, revision)
    assert _tables(database_url) >= set(Base.metadata.tables)


def test_models_match_migrations(database_url: str) -> None:
    # `alembic check` fails when autogenerate would produce a new migration.
    command.check(migrate.alembic_config(database_url))


def test_head_is_single() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config(""))
    assert len(script.get_heads()) == 1
    assert migrate.head_revision() == _all_revisions()[-1]
    # serve compares against this constant to avoid importing Alembic on every start.
    assert migrate.head_revision() == migrate.HEAD_REVISION
