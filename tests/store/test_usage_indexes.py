"""The usage table's indexes as the queries use them: a team's usage is found through the partial team index
(WHERE team_id IS NOT NULL, which `team_id = …` implies), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.pool import NullPool

from gateway.store.db import make_engine

TEAM_INDEX = "ix_usage_records_team_id_created_at"


async def test_a_teams_usage_query_uses_the_partial_team_index(database_url: str) -> None:
    team = uuid.uuid4().hex
    # The shape of usage_report's filter for a team: its id and a period.
    query = (f"SELECT count(*), sum(cost_usd) FROM usage_records WHERE team_id = '{team}' "
             "AND created_at >= '2026-01-01' AND created_at < '2027-01-01'")
    engine = make_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                plan = " ".join(str(row[-1]) for row in await connection.execute(text("EXPLAIN QUERY PLAN " + query)))
                index = (await connection.execute(text(
                    "SELECT sql FROM sqlite_master WHERE name = :name"), {"name": TEAM_INDEX})).scalar_one()
            else:
                await connection.execute(text("SET enable_seqscan = off"))  # an empty table: ask for the index
                plan = " ".join(row[0] for row in await connection.execute(text("EXPLAIN " + query)))
                index = (await connection.execute(text(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = :name"), {"name": TEAM_INDEX})).scalar_one()
    finally:
        await engine.dispose()
    assert "team_id IS NOT NULL" in index, index
    assert TEAM_INDEX in plan, plan
