"""The usage INSERT's parameters: the driver-level rows hold exactly what SQLAlchemy's column types would bind
(timestamps to the microsecond, NULLs, ids), on both databases, and each configuration's last use is its latest."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from gateway.configurations.model_catalog import ModelEntry
from gateway.proxy.cache import CachedConfiguration, CachedTeam
from gateway.proxy.relay import usage_of_body
from gateway.proxy.usage import USAGE_COLUMNS, RowInserter, UsageEvent, cost_usd, timestamp_binder
from gateway.store.db import make_engine, make_sessionmaker
from gateway.store.models import UsageRecord, User

SQLITE_DATETIME = cast(Table, UsageRecord.__table__).c.created_at.type.dialect_impl(
    sqlite.dialect()).bind_processor(sqlite.dialect())


def _unix_times() -> list[float]:
    rng = random.Random(29)
    base = datetime(2026, 12, 1, 23, 59, 58, tzinfo=UTC).timestamp()
    times = [base + rng.random() * 4 for _ in range(3000)]
    # Fractions that round up into the next second, exact halves of a microsecond (7812.5 and 23437.5: to even),
    # near-halves, a second's first and last microsecond, a year boundary, and what time.time() gives.
    times += [base + 0.9999996, base + 0.9999994, base + 0.0078125, base + 0.0234375, base + 0.0000005,
              base + 0.0000015, base + 0.0000025, base, base + 0.999999, datetime(2027, 1, 1, tzinfo=UTC).timestamp() - 0.0000001,
              datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC).timestamp(), time.time()]
    return times


def test_the_timestamp_binder_binds_what_sqlalchemy_binds_for_fromtimestamp() -> None:
    assert SQLITE_DATETIME is not None
    text = timestamp_binder(SQLITE_DATETIME)
    for at in _unix_times():
        assert text(at) == SQLITE_DATETIME(datetime.fromtimestamp(at, UTC)), at
    for at in (-1.5, -0.0000004, 0.0):  # before 1970: fromtimestamp's own rounding
        assert text(at) == SQLITE_DATETIME(datetime.fromtimestamp(at, UTC)), at


def test_a_processor_whose_text_does_not_end_in_microseconds_is_given_datetimes() -> None:
    def iso(value: Any) -> Any:
        return value.isoformat() if value is not None else None  # "...789012+00:00"

    at = time.time()
    assert timestamp_binder(iso)(at) == datetime.fromtimestamp(at, UTC).isoformat()
    assert timestamp_binder(None)(at) == datetime.fromtimestamp(at, UTC)  # a driver that takes datetimes (asyncpg)


PRICES = {"custom_openai/gpt-4o-mini": ModelEntry("custom_openai", "chat", 1.5e-07, 6e-07),
          "claude-3-haiku": ModelEntry("anthropic", "chat", 2.5e-07, 1.25e-06)}


def _configuration(model: str, team: CachedTeam | None = None, *, same_id_as: CachedConfiguration | None = None
                   ) -> CachedConfiguration:
    # same_id_as: a distinct object with an equal (not identical) id, as a cache rebuilt mid-batch holds.
    config_id = uuid.UUID(str(same_id_as.id)) if same_id_as is not None else uuid.uuid4()
    return CachedConfiguration(
        id=config_id, id_str=str(config_id), user_id=None if team else uuid.uuid4(), name=model, provider="custom",
        model=model, api_key_encrypted="v1.x.y", base_url="http://127.0.0.1:9/v1", wire="openai",
        litellm_provider="custom_openai" if model != "claude-3-haiku" else "anthropic", is_default=False,
        is_active=True, fallback_ids=(), created=0, binding=b"", refusal=None, team=team)


def _events(user_id: uuid.UUID, times: list[float]) -> list[UsageEvent]:
    mini = _configuration("gpt-4o-mini")
    configurations = [mini, _configuration("gpt-4o-mini", same_id_as=mini), _configuration("unpriced"),
                      _configuration("claude-3-haiku", CachedTeam(uuid.uuid4(), "acme", None)), None]
    events: list[UsageEvent] = []
    for n, at in enumerate(times):
        # Every column both ways: NULLs, a body parsed for its usage or not, a stream, an error, equal user ids
        # as distinct objects.
        usage = (n, 2 * n) if n % 4 else None
        body = b'{"usage": {"prompt_tokens": %d, "completion_tokens": 3}}' % n if n % 8 == 0 else None
        events.append((f"{n:016x}", uuid.UUID(str(user_id)) if n % 6 == 0 else user_id, configurations[n % 5],
                       f"conv-{n}" if n % 2 else None, "/chat/completions" if n % 3 else "/embeddings",
                       200 if n % 7 else 502, 1 + n % 2, bool(n % 2), n / 997, at, usage, body,
                       "UpstreamError" if n % 7 == 0 else None))
    return events


def _plain(event: UsageEvent) -> tuple[Any, ...]:
    """An event's row as Python values in USAGE_COLUMNS order, the obvious way."""
    (_, user_id, configuration, conversation_id, path, status, attempts, stream, latency_s, created, usage, body,
     error_class) = event
    if usage is None and body is not None:
        usage = usage_of_body(body)
    prompt, completion = usage or (0, 0)
    cost = 0.0
    if configuration is not None:
        cost = cost_usd(PRICES, litellm_provider=configuration.litellm_provider, model=configuration.model,
                        prompt_tokens=prompt, completion_tokens=completion)
    return (user_id, configuration.id if configuration else None,
            configuration.team.id if configuration and configuration.team else None, conversation_id,
            path.lstrip("/"), configuration.provider if configuration else None,
            configuration.model if configuration else None, prompt, completion, cost, round(latency_s * 1000), status,
            error_class, attempts, stream, datetime.fromtimestamp(created, UTC))


def _reference(dialect: Dialect, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Each value through its column type's processor, no memo: what SQLAlchemy itself binds."""
    table = cast(Table, UsageRecord.__table__)
    out = []
    for row in rows:
        values = []
        for name, value in zip(USAGE_COLUMNS, row, strict=True):
            process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            values.append(process(value) if process is not None and value is not None else value)
        out.append(tuple(values))
    return out


def test_parameters_equal_sqlalchemys_binding_on_both_dialects() -> None:
    events = _events(uuid.uuid4(), _unix_times()[-300:])
    plain = [_plain(event) for event in events]
    assert {row[7] for row in plain} > {0} and {row[9] for row in plain} > {0.0}  # tokens and costs, not zeros
    for dialect in (sqlite.dialect(), postgresql.asyncpg.dialect()):  # type: ignore[attr-defined]
        rows, _ = RowInserter(dialect).rows(events, PRICES)
        assert rows == _reference(dialect, plain), dialect.name


async def test_rows_read_back_as_written_nulls_and_microseconds_included(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        sessions = make_sessionmaker(engine)
        user = User(name="usage-rows")
        async with sessions() as session:
            session.add(user)
            await session.commit()
        events = _events(user.id, _unix_times()[-200:])
        async with sessions() as session:
            connection = await session.connection()
            rows, _ = RowInserter(connection.dialect).rows(events, PRICES)
            await connection.exec_driver_sql(RowInserter(connection.dialect).sql, rows)
            await session.commit()
        async with sessions() as session:
            stored = (await session.execute(select(UsageRecord).order_by(UsageRecord.id))).scalars().all()
    finally:
        await engine.dispose()
    assert len(stored) == len(events)
    for record, event in zip(stored, events, strict=True):
        assert tuple(getattr(record, name) for name in USAGE_COLUMNS) == _plain(event)


def test_last_used_is_each_configurations_latest_success_whatever_object_holds_its_id() -> None:
    config = _configuration("gpt-4o-mini")
    same, other = _configuration("gpt-4o-mini", same_id_as=config), _configuration("unpriced")
    t0 = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    user_id = uuid.uuid4()

    def event(configuration: CachedConfiguration | None, at: float, status: int = 200) -> UsageEvent:
        return ("0", user_id, configuration, None, "/chat/completions", status, 1, False, 0.0, at, None, None, None)

    # The latest use first, by another object holding the same id: neither the order nor the object decides.
    events = [event(same, t0 + 9), event(config, t0 + 5), event(config, t0 + 7), event(config, t0 + 30, status=502),
              event(other, t0), event(None, t0 + 60)]
    _, last_used = RowInserter(sqlite.dialect()).rows(events, PRICES)
    assert last_used == {config.id: datetime.fromtimestamp(t0 + 9, UTC), other.id: datetime.fromtimestamp(t0, UTC)}
