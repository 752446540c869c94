"""The usage INSERT's parameters: the driver-level rows hold exactly what SQLAlchemy's column types would bind
(timestamps to the microsecond, NULLs, ids), on both databases, and each configuration's last use is its latest."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite

from gateway.proxy.usage import USAGE_COLUMNS, RowInserter, _last_used, per_second
from gateway.store.db import make_engine, make_sessionmaker
from gateway.store.models import UsageRecord, User

SQLITE_DATETIME = cast(Table, UsageRecord.__table__).c.created_at.type.dialect_impl(
    sqlite.dialect()).bind_processor(sqlite.dialect())


def _times() -> list[datetime]:
    rng = random.Random(17)
    base = datetime(2026, 12, 1, 23, 59, 58, tzinfo=UTC)
    times = [base + timedelta(microseconds=rng.randrange(4_000_000)) for _ in range(2000)]
    # A second's first and last microsecond, a year and a day boundary, and values fromtimestamp rounds.
    times += [base.replace(microsecond=0), base.replace(microsecond=999_999),
              datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)]
    times += [datetime.fromtimestamp(1_764_633_600 + rng.random() * 10, UTC) for _ in range(500)]
    return times


def test_the_per_second_timestamp_processor_writes_what_sqlalchemys_writes() -> None:
    assert SQLITE_DATETIME is not None
    fast = per_second(SQLITE_DATETIME)
    assert fast is not SQLITE_DATETIME  # SQLite's text form ends in the microseconds: memoized
    for value in _times():
        assert fast(value) == SQLITE_DATETIME(value), value
    # Anything but a UTC datetime is the processor's own business (other zones, naive values, None).
    berlin = datetime(2026, 12, 1, 12, 0, 0, 123_456, tzinfo=timezone(timedelta(hours=1)))
    for value in (berlin, berlin.replace(tzinfo=None), None):
        assert fast(value) == SQLITE_DATETIME(value)


def test_a_processor_whose_text_does_not_end_in_microseconds_is_left_alone() -> None:
    def iso(value: Any) -> Any:
        return value.isoformat() if value is not None else None  # "...789012+00:00"

    def native(value: Any) -> Any:
        return value  # a driver that takes datetime objects (asyncpg)

    assert per_second(iso) is iso
    assert per_second(native) is native


def _reference(inserter: RowInserter, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Each value through its column type's processor, no memo: what SQLAlchemy itself binds."""
    dialect = inserter.dialect
    table = cast(Table, UsageRecord.__table__)
    out = []
    for row in rows:
        values = []
        for name in inserter.order:
            value = row[USAGE_COLUMNS.index(name)]
            process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            values.append(process(value) if process is not None and value is not None else value)
        out.append(tuple(values))
    return out


def _rows(user_id: uuid.UUID, times: list[datetime]) -> list[tuple[Any, ...]]:
    config = uuid.uuid4()
    rows = []
    for n, at in enumerate(times):
        # Equal ids as distinct objects (a cache rebuilt mid-batch), and the NULLable columns both ways.
        cid = uuid.UUID(str(config)) if n % 3 else config
        rows.append((user_id, cid if n % 5 else None, f"conv-{n}" if n % 2 else None, "chat/completions",
                     "openai", "gpt-4o-mini", n, 2 * n, n / 1000, n % 300, 200 if n % 7 else 502,
                     "UpstreamError" if n % 7 == 0 else None, 1 + n % 2, bool(n % 2), at,
                     uuid.uuid4() if n % 11 == 0 else None))
    return rows


def test_parameters_equal_sqlalchemys_binding_on_both_dialects() -> None:
    rows = _rows(uuid.uuid4(), _times()[:300])
    for dialect in (sqlite.dialect(), postgresql.asyncpg.dialect()):  # type: ignore[attr-defined]
        inserter = RowInserter(dialect)
        assert inserter.parameters(rows) == _reference(inserter, rows), dialect.name


async def test_rows_read_back_as_written_nulls_and_microseconds_included(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        sessions = make_sessionmaker(engine)
        user = User(name="usage-rows")
        async with sessions() as session:
            session.add(user)
            await session.commit()
        rows = _rows(user.id, _times()[:200])
        async with sessions() as session:
            connection = await session.connection()
            inserter = RowInserter(connection.dialect)
            await connection.exec_driver_sql(inserter.sql, inserter.parameters(rows))
            await session.commit()
        async with sessions() as session:
            stored = (await session.execute(select(UsageRecord).order_by(UsageRecord.id))).scalars().all()
    finally:
        await engine.dispose()
    assert len(stored) == len(rows)
    for record, row in zip(stored, rows, strict=True):
        assert tuple(getattr(record, name) for name in USAGE_COLUMNS) == row


def test_last_used_is_each_configurations_latest_success_whatever_object_holds_its_id() -> None:
    config, other = uuid.uuid4(), uuid.uuid4()
    t0 = datetime(2026, 12, 1, tzinfo=UTC)

    def row(cid: uuid.UUID | None, at: datetime, status: int = 200) -> tuple[Any, ...]:
        return (None, cid, None, "", None, None, 0, 0, 0.0, 0, status, None, 1, False, at, None)

    rows = [row(config, t0 + timedelta(seconds=5)), row(uuid.UUID(str(config)), t0 + timedelta(seconds=9)),
            row(config, t0 + timedelta(seconds=7)), row(config, t0 + timedelta(seconds=30), status=502),
            row(other, t0), row(None, t0 + timedelta(seconds=60))]
    assert _last_used(rows) == {config: t0 + timedelta(seconds=9), other: t0}
