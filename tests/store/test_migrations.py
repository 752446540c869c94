"""Alembic owns the schema: every migration upgrades and downgrades on SQLite and PostgreSQL, and the models
match what the migrations build."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
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


def _sql(url: str, *statements: str) -> list[list[tuple[object, ...]]]:
    async def run() -> list[list[tuple[object, ...]]]:
        engine = make_engine(url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                results = []
                for statement in statements:
                    result = await conn.execute(text(statement))
                    results.append([tuple(r) for r in result] if result.returns_rows else [])
                return results
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_teams_revision_keeps_personal_rows_and_drops_team_rows_on_the_way_down(database_url: str) -> None:
    # 0004 rebuilds llm_configurations on SQLite: the rows, and the conversations bound to them, must survive
    # it; going down, team configurations (whose keys cannot become personal) are removed, personal ones stay.
    ids = [uuid.uuid4() for _ in range(3)]
    user, config, team = (i.hex if database_url.startswith("sqlite") else str(i) for i in ids)
    team_config = uuid.uuid4().hex if database_url.startswith("sqlite") else str(uuid.uuid4())
    now = "CURRENT_TIMESTAMP"
    columns = ("id, user_id, name, provider, model, api_key_encrypted, key_id, is_default, is_active, fallback_ids, "
               "test_status, created_at, updated_at")
    values = "'{id}', {owner}, 'p', 'openai', 'm', 'v1.t1.x', 't1', false, true, '[]', 'untested', " + f"{now}, {now}"
    migrate.downgrade(database_url, "0003")
    _sql(database_url,
         f"INSERT INTO users (id, name, is_admin, created_at) VALUES ('{user}', 'u', false, {now})",
         f"INSERT INTO llm_configurations ({columns}) VALUES ({values.format(id=config, owner=repr(user))})",
         "INSERT INTO conversation_configurations (user_id, conversation_id, configuration_id, updated_at) "
         f"VALUES ('{user}', 'c1', '{config}', {now})")
    migrate.upgrade(database_url, "0004")
    _sql(database_url,
         f"INSERT INTO teams (id, name, created_at) VALUES ('{team}', 't', {now})",
         f"INSERT INTO llm_configurations ({columns}, team_id) VALUES "
         f"({values.format(id=team_config, owner='NULL')}, '{team}')",
         "INSERT INTO conversation_configurations (user_id, conversation_id, configuration_id, updated_at) "
         f"VALUES ('{user}', 'c2', '{team_config}', {now})")
    counts = "SELECT count(*) FROM llm_configurations", "SELECT count(*) FROM conversation_configurations"
    assert [r[0][0] for r in _sql(database_url, *counts)] == [2, 2]
    with pytest.raises(IntegrityError):  # neither a user's nor a team's: the CHECK refuses it
        _sql(database_url, "UPDATE llm_configurations SET team_id = NULL WHERE user_id IS NULL")
    migrate.downgrade(database_url, "0003")
    assert [r[0][0] for r in _sql(database_url, *counts)] == [1, 1]
    migrate.upgrade(database_url, "head")


def test_history_revision_keeps_team_rows_of_deleted_users_and_walks_back(database_url: str) -> None:
    # 0008: deleting a user no longer cascades into usage and audit rows (SET NULL, the name kept by the
    # application); going down, usage rows without a user are removed before user_id is NOT NULL again, and
    # the cascade is back.
    sqlite = database_url.startswith("sqlite")
    user, other, team = (uuid.uuid4().hex if sqlite else str(uuid.uuid4()) for _ in range(3))
    now = "CURRENT_TIMESTAMP"

    def usage(owner: str) -> str:
        return ("INSERT INTO usage_records (user_id, team_id, endpoint, prompt_tokens, completion_tokens, cost_usd, "
                f"latency_ms, status, attempts, stream, created_at) VALUES ('{owner}', '{team}', 'chat/completions', "
                f"1, 2, 0.5, 3, 200, 1, false, {now})")

    def audit(owner: str) -> str:
        return ("INSERT INTO audit_events (user_id, actor, action, team_id, details, created_at) VALUES "
                f"('{owner}', 'u', 'team.rotate_key', '{team}', '{{}}', {now})")

    counts = ("SELECT count(*) FROM usage_records", "SELECT count(*) FROM audit_events")
    migrate.downgrade(database_url, "0007")
    _sql(database_url, f"INSERT INTO users (id, name, is_admin, created_at) VALUES ('{user}', 'u', false, {now})",
         usage(user), audit(user))
    migrate.upgrade(database_url, "0008")
    assert [r[0][0] for r in _sql(database_url, *counts)] == [1, 1]  # the rows survived the rebuild
    _sql(database_url, f"DELETE FROM users WHERE id = '{user}'")
    assert [r[0][0] for r in _sql(database_url, *counts)] == [1, 1]
    assert _sql(database_url, "SELECT user_id FROM usage_records", "SELECT user_id FROM audit_events") == [
        [(None,)], [(None,)]]
    migrate.downgrade(database_url, "0007")
    assert [r[0][0] for r in _sql(database_url, *counts)] == [0, 1]
    _sql(database_url, f"INSERT INTO users (id, name, is_admin, created_at) VALUES ('{other}', 'o', false, {now})",
         usage(other), audit(other))
    _sql(database_url, f"DELETE FROM users WHERE id = '{other}'")
    assert [r[0][0] for r in _sql(database_url, *counts)] == [0, 1]  # the cascade is back
    migrate.upgrade(database_url, "head")
