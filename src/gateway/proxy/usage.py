"""Usage accounting off the hot path: requests append a small record to a buffer; a background task prices
them with litellm's price list and writes them (and each configuration's last_used_at) in batches."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, cast

from aiohttp import web
from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.background import running
from gateway.configurations.model_catalog import ModelEntry, model_data
from gateway.logs import field_value
from gateway.proxy.cache import CachedConfiguration
from gateway.proxy.metrics import ProxyMetrics
from gateway.proxy.relay import usage_of_body
from gateway.store.models import LLMConfiguration, UsageRecord
from gateway.web.appkeys import METRICS, SESSIONMAKER, SETTINGS, USAGE

log = logging.getLogger("gateway.usage")
access_log = logging.getLogger("gateway.access")
# In the table's order, which the compiled INSERT's positional parameters follow.
USAGE_COLUMNS = ["user_id", "configuration_id", "team_id", "conversation_id", "endpoint", "provider", "model",
                 "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms", "status", "error_class", "attempts",
                 "stream", "created_at"]
# Columns whose values differ from row to row (the others repeat: bound once per batch and value).
PER_ROW = frozenset({"conversation_id", "prompt_tokens", "completion_tokens", "latency_ms", "status", "error_class",
                     "attempts"})
# A database outage must not grow memory without bound: past this, the oldest records are dropped.
MAX_BUFFERED = 200_000
# The flusher's shortest pause between flushes, however busy.
MIN_PAUSE_S = 0.01
# The database is not there right now (down, restarting, locked, pool exhausted): records wait for the next
# flush. Any other failure is a row the database refuses: retried alone, then dropped.
UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout, OSError)


def database_unavailable(exc: BaseException) -> bool:
    """True when a write failed for want of a database, not because of what it wrote."""
    return isinstance(exc, UNAVAILABLE) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


# One finished proxied request as the hot path leaves it: a plain tuple, the cheapest thing to build. Everything
# else (the row, its cost, the tokens of a non-streamed answer, metrics, the access line) is the flusher's work.
#   (request_id, user_id, configuration, conversation_id, path, status, attempts, stream, latency_s,
#    created_at (time.time()), usage (prompt, completion) or None, answer body to parse for usage or None,
#    error_class)
UsageEvent = tuple[str, uuid.UUID, CachedConfiguration | None, str | None, str, int, int, bool, float, float,
                   tuple[int, int] | None, bytes | None, str | None]
# Fields the metrics count, read from a batch of events in C.
PATH, STATUS, LATENCY = itemgetter(4), itemgetter(5), itemgetter(8)


def token_prices(prices: Mapping[str, ModelEntry], *, litellm_provider: str | None,
                 model: str | None) -> tuple[float, float]:
    """(prompt, completion) price per token of a model; zeros for a model the list does not know."""
    if not model:
        return (0.0, 0.0)
    entry = prices.get(f"{litellm_provider}/{model}") or prices.get(model)
    if entry is None:
        return (0.0, 0.0)
    return (entry.input_cost_per_token or 0.0, entry.output_cost_per_token or 0.0)


def cost_usd(prices: Mapping[str, ModelEntry], *, litellm_provider: str | None, model: str | None,
             prompt_tokens: int, completion_tokens: int) -> float:
    """Price of a request from the per-token prices of its model; 0.0 for a model the list does not know."""
    per_token = token_prices(prices, litellm_provider=litellm_provider, model=model)
    return priced(per_token, prompt_tokens, completion_tokens)


def priced(per_token: tuple[float, float], prompt_tokens: int, completion_tokens: int) -> float:
    """The cost of one request's tokens at (prompt, completion) prices per token: the one formula of usage rows."""
    return float(prompt_tokens * per_token[0] + completion_tokens * per_token[1])


def next_pause(pause: float, written: int, *, interval_s: float, batch_size: int) -> float:
    """The flusher's next pause after one that saw WRITTEN records: the interval, or while busy about the time one
    batch takes to arrive. A record holds its answer body until written: an interval's worth at thousands of
    requests/s is megabytes of peak memory, which the process keeps. The batches (transactions) are the same."""
    if written <= 0:
        return interval_s
    return max(MIN_PAUSE_S, min(interval_s, pause * batch_size / written))


class RowInserter:
    """The usage INSERT as one driver-level executemany, its parameters built in one pass over a batch.
    SQLAlchemy's generic per-row parameter handling costs more than the database's own work here; its column
    types' bind processors are still the ones applied, each value derived from a configuration, a user or a path
    once per batch (a batch holds a few of each many times), by object identity: a UUID's hash is Python."""

    def __init__(self, dialect: Dialect) -> None:
        table = cast(Table, UsageRecord.__table__)
        compiled = insert(table).compile(dialect=dialect, column_keys=USAGE_COLUMNS)
        if compiled.positiontup != USAGE_COLUMNS:
            raise RuntimeError(f"{dialect.name}: usage inserts need positional parameters in USAGE_COLUMNS' order")
        self.dialect = dialect
        self.sql = compiled.string
        processors: dict[str, Callable[[Any], Any] | None] = {
            name: table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in USAGE_COLUMNS}
        self._process = processors
        self._created_at = timestamp_binder(processors["created_at"])
        self._cost = processors["cost_usd"]
        # Per-row values with a processor other than the two above: none on SQLite or asyncpg, handled if ever.
        self._others = tuple((USAGE_COLUMNS.index(name), process) for name, process in processors.items()
                             if process is not None and name in PER_ROW)
        configurations = cast(Table, LLMConfiguration.__table__)
        # Each configuration's last use; updated_at keeps its value: it tells when it was edited, not used.
        self.touch = (update(configurations).where(configurations.c.id == bindparam("b_id"))
                      .values(last_used_at=bindparam("b_at"), updated_at=configurations.c.updated_at))

    def bind(self, name: str, value: Any) -> Any:
        """One value as its column's type binds it (None stays None)."""
        process = self._process[name]
        return process(value) if process is not None and value is not None else value

    def rows(self, batch: list[UsageEvent], prices: Mapping[str, ModelEntry]
             ) -> tuple[list[tuple[Any, ...]], dict[uuid.UUID, datetime]]:
        """The batch's INSERT parameters, and each configuration's latest successful use in it. Tokens come from
        the answer when the stream did not report them; the cost from the model's per-token prices."""
        served: dict[int, tuple[Any, Any, Any, Any, tuple[float, float]]] = {}
        users: dict[int, Any] = {}
        endpoints: dict[str, Any] = {}
        used: dict[int, tuple[uuid.UUID, float]] = {}
        streams = (self.bind("stream", False), self.bind("stream", True))
        created_at, cost_of, others = self._created_at, self._cost, self._others
        out = []
        for (_, user_id, configuration, conversation_id, path, status, attempts, stream, latency_s, created,
             usage, body, error_class) in batch:
            if usage is None and body is not None:
                usage = usage_of_body(body)
            prompt, completion = usage or (0, 0)
            by = served.get(id(configuration))
            if by is None:
                by = served[id(configuration)] = self._served(configuration, prices)
            cid, team, provider, model, per_token = by
            user = users.get(id(user_id))
            if user is None:
                user = users[id(user_id)] = self.bind("user_id", user_id)
            name = endpoints.get(path)
            if name is None:
                name = endpoints[path] = self.bind("endpoint", endpoint(path))
            cost = priced(per_token, prompt, completion)
            row = (user, cid, team, conversation_id, name, provider, model, prompt, completion,
                   cost_of(cost) if cost_of is not None else cost, round(latency_s * 1000), status, error_class,
                   attempts, streams[stream], created_at(created))
            if others:
                values = list(row)
                for i, process in others:
                    if values[i] is not None:
                        values[i] = process(values[i])
                row = tuple(values)
            out.append(row)
            if configuration is not None and status < 400:
                seen = used.get(id(configuration))
                if seen is None or seen[1] < created:
                    used[id(configuration)] = (configuration.id, created)
        return out, _latest(used.values())

    def _served(self, configuration: CachedConfiguration | None, prices: Mapping[str, ModelEntry]
                ) -> tuple[Any, Any, Any, Any, tuple[float, float]]:
        """The bound columns a configuration gives its rows, and its model's per-token prices."""
        if configuration is None:
            return (None, None, None, None, (0.0, 0.0))
        team = configuration.team.id if configuration.team is not None else None
        return (self.bind("configuration_id", configuration.id), self.bind("team_id", team),
                self.bind("provider", configuration.provider), self.bind("model", configuration.model),
                token_prices(prices, litellm_provider=configuration.litellm_provider, model=configuration.model))


def _latest(used: Iterable[tuple[uuid.UUID, float]]) -> dict[uuid.UUID, datetime]:
    """Each configuration's latest use by id value (equal ids may be distinct objects: a cache rebuilt meanwhile)."""
    latest: dict[uuid.UUID, float] = {}
    for cid, at in used:
        if latest.get(cid, -1.0) < at:
            latest[cid] = at
    return {cid: datetime.fromtimestamp(at, UTC) for cid, at in latest.items()}


PROBE = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
MAX_SECONDS_MEMO = 4096


def timestamp_binder(process: Callable[[Any], Any] | None) -> Callable[[float], Any]:
    """A function of a unix time to what a timestamp column binds for it: `process(datetime.fromtimestamp(t,
    UTC))`. When the processor's text ends in the six microsecond digits (SQLite's; checked here, on a probe),
    the text is made once per second and the microseconds appended: SQLite's formats a dict per value, the
    costliest step of a usage row, and no datetime is made at all."""
    if process is None:
        return lambda at: datetime.fromtimestamp(at, UTC)
    bind = process
    whole = bind(PROBE)
    if not isinstance(whole, str) or whole != bind(PROBE.replace(microsecond=0))[:-6] + "789012":
        return lambda at: bind(datetime.fromtimestamp(at, UTC))
    memo: dict[int, str] = {}

    def text(at: float) -> Any:
        if not at >= 0.0:  # before 1970 (or NaN): fromtimestamp's own rounding, not the one below
            return bind(datetime.fromtimestamp(at, UTC))
        second = int(at)
        # fromtimestamp's microseconds: the exact fraction times 10**6, rounded half to even; 10**6 carries.
        micro = round((at - second) * 1e6)
        if micro == 1_000_000:
            second, micro = second + 1, 0
        prefix = memo.get(second)
        if prefix is None:
            if len(memo) >= MAX_SECONDS_MEMO:
                memo.clear()
            prefix = memo[second] = bind(datetime.fromtimestamp(second, UTC))[:-6]
        return prefix + str(1_000_000 + micro)[1:]  # cheaper than a format spec

    return text


def access_fields(event: UsageEvent) -> dict[str, Any]:
    """One request's access record: never a key, a header or a body (JSON log lines carry these as fields)."""
    request_id, user_id, configuration, _, path, status, attempts, _, latency_s, created_at = event[:10]
    return {"at": datetime.fromtimestamp(created_at, UTC).isoformat(timespec="milliseconds"),
            "request_id": request_id, "user_id": str(user_id),
            "configuration_id": str(configuration.id) if configuration is not None else "-",
            "endpoint": endpoint(path), "status": status, "attempts": attempts,
            "latency_ms": round(latency_s * 1000, 1)}


def access_line(fields: dict[str, Any]) -> str:
    """The text form of an access record: `time key=value ...`, one of each. The endpoint is the client's path,
    quoted when it could pass for more fields; the other values are the gateway's own (ids, numbers)."""
    return str(fields["at"]) + " " + " ".join(
        f"{key}={field_value(value) if key == 'endpoint' else value}" for key, value in fields.items() if key != "at")


def endpoint(path: str) -> str:
    """The endpoint column of a proxied path."""
    return path.lstrip("/")[:50]


class UsageWriter:
    """The buffer and its batch writer."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, interval_s: float, batch_size: int,
                 access_log: bool, metrics: ProxyMetrics) -> None:
        self._sessionmaker = sessionmaker
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.access_log = access_log
        self._metrics = metrics
        self._incoming: list[UsageEvent] = []  # not yet counted in the metrics nor logged
        self._buffer: list[UsageEvent] = []  # counted and logged, not yet written
        self._prices: Mapping[str, ModelEntry] | None = None
        self._inserter: RowInserter | None = None
        self._lock = asyncio.Lock()
        self.dropped = 0

    def append(self, event: UsageEvent) -> None:
        """Queue a record (hot path: one list append)."""
        self._incoming.append(event)

    def settle(self) -> None:
        """Count the requests since the last call in the metrics and log their access lines (buffered like
        nginx's, one record each); their rows wait for the next flush. /metrics calls it before every scrape."""
        self._metrics.settle_attempts()
        events, self._incoming = self._incoming, []
        if not events:
            return
        self._metrics.observe_all(list(map(PATH, events)), list(map(STATUS, events)), list(map(LATENCY, events)))
        if self.access_log and access_log.isEnabledFor(logging.INFO):
            for event in events:  # one record per request: a log line is never two requests
                fields = access_fields(event)
                # Made and handled directly: Logger.info would look for its caller up the stack, every line.
                access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, "(access)", 0, "%s",
                                                        (access_line(fields),), None, extra={"access": fields}))
        buffer = self._buffer
        buffer.extend(events)
        if len(buffer) > MAX_BUFFERED:
            excess = len(buffer) - MAX_BUFFERED
            del buffer[:excess]
            self.dropped += excess
            self._metrics.usage_dropped.inc(excess)

    @property
    def pending(self) -> int:
        """Records not yet written."""
        return len(self._buffer) + len(self._incoming)

    async def run(self) -> None:
        """Flush every interval, sooner while busy, until cancelled; no record, however odd, stops it."""
        pause = self.interval_s
        while True:
            await asyncio.sleep(pause)
            try:
                done = await self.flush()
            except Exception as exc:  # noqa: BLE001 - one bad flush must not end accounting for everyone
                log.warning("usage flush failed (%s); will retry", exc.__class__.__name__)
                done = 0
            pause = next_pause(pause, done, interval_s=self.interval_s, batch_size=self.batch_size)

    async def flush(self) -> int:
        """Write what was buffered when called (later records wait for the next flush); returns the count of
        records handled (written or dropped)."""
        self.settle()
        async with self._lock:
            taken, self._buffer = self._buffer, []
            done = 0
            try:
                while done < len(taken):
                    batch = taken[done:done + self.batch_size]
                    try:
                        await self._write(batch)
                        done += len(batch)
                        continue
                    except Exception as exc:
                        if database_unavailable(exc):
                            raise
                    for event in batch:  # one row spoils its batch: write them one by one, drop the bad
                        await self._write_or_drop(event)
                        done += 1
            except BaseException:
                # Unwritten records go back in front, to be retried with the next flush.
                self._buffer[:0] = taken[done:]
                raise
            return done

    async def _write_or_drop(self, event: UsageEvent) -> None:
        try:
            await self._write([event])
        except Exception as exc:
            if database_unavailable(exc):
                raise
            # Retrying a row the database refused would refuse it forever: count it and go on.
            self.dropped += 1
            self._metrics.usage_dropped.inc()
            log.warning("usage record dropped: the database refused it (%s) request_id=%s",
                        exc.__class__.__name__, event[0])

    async def _write(self, batch: list[UsageEvent]) -> None:
        if self._prices is None:
            self._prices = await asyncio.to_thread(model_data)
        async with self._sessionmaker() as session:
            connection = await session.connection()
            inserter = self._inserter
            if inserter is None or inserter.dialect is not connection.dialect:
                inserter = self._inserter = RowInserter(connection.dialect)
            rows, last_used = inserter.rows(batch, self._prices)
            await connection.exec_driver_sql(inserter.sql, rows)
            if last_used:
                await session.execute(inserter.touch, [{"b_id": cid, "b_at": at} for cid, at in last_used.items()])
            await session.commit()


async def usage_ctx(app: web.Application) -> AsyncIterator[None]:
    """The usage writer and its background flusher (usage rows, last_used_at, access lines); a last flush on
    shutdown."""
    settings = app[SETTINGS]
    writer = UsageWriter(app[SESSIONMAKER], interval_s=settings.usage_flush_interval_s,
                         batch_size=settings.usage_batch_size, access_log=settings.access_log, metrics=app[METRICS])
    app[USAGE] = writer
    async with running(writer.run, name="usage-flusher", crashes=app[METRICS].task_crashes):
        yield
    try:
        await writer.flush()
    except Exception as exc:  # noqa: BLE001 - shutdown goes on; the count says what was lost
        log.warning("final usage flush failed (%s); %d records lost", exc.__class__.__name__, writer.pending)
