"""Usage accounting off the hot path: requests append a small record to a buffer; a background task prices
them with litellm's price list and writes them (and each configuration's last_used_at) in batches."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import bindparam, insert, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.appkeys import SESSIONMAKER, SETTINGS, USAGE
from gateway.models import LLMConfiguration, UsageRecord
from gateway.proxy.background import running
from gateway.proxy.relay import usage_of_body

log = logging.getLogger("gateway.usage")
access_log = logging.getLogger("gateway.access")
PRICE_FILE = "model_prices_and_context_window_backup.json"
USAGE_COLUMNS = ["user_id", "configuration_id", "conversation_id", "endpoint", "provider", "model", "prompt_tokens",
                 "completion_tokens", "cost_usd", "latency_ms", "status", "error_class", "attempts", "stream",
                 "created_at"]
# A database outage must not grow memory without bound: past this, the oldest records are dropped.
MAX_BUFFERED = 200_000


@dataclass(slots=True)
class UsageEvent:
    """One finished proxied request, as the hot path leaves it (tokens may still be inside `body`)."""

    request_id: str
    user_id: uuid.UUID
    configuration_id: uuid.UUID | None
    conversation_id: str | None
    endpoint: str
    provider: str | None
    litellm_provider: str | None
    model: str | None
    status: int
    attempts: int
    stream: bool
    latency_s: float
    created_at: float  # time.time()
    usage: tuple[int, int] | None = None
    body: bytes | None = None  # a non-streamed answer, parsed for its usage by the flusher, not the request
    error_class: str | None = None


def load_price_list() -> dict[str, Any]:
    """litellm's bundled price list, read as JSON: importing litellm itself would cost seconds and memory."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / PRICE_FILE
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        log.warning("litellm's price list could not be read; usage is recorded without cost")
        return {}
    return data if isinstance(data, dict) else {}


def cost_usd(prices: dict[str, Any], *, litellm_provider: str | None, model: str | None,
             prompt_tokens: int, completion_tokens: int) -> float:
    """Price of a request from the per-token prices of its model; 0.0 for a model the list does not know."""
    if not model:
        return 0.0
    entry = prices.get(f"{litellm_provider}/{model}") or prices.get(model)
    if not isinstance(entry, dict):
        return 0.0
    prompt_price = entry.get("input_cost_per_token") or 0.0
    completion_price = entry.get("output_cost_per_token") or 0.0
    return float(prompt_tokens * prompt_price + completion_tokens * completion_price)


class RowInserter:
    """The usage INSERT as one driver-level executemany. SQLAlchemy's generic per-row parameter handling
    costs more than the database's own work here; its type processors are still the ones applied."""

    def __init__(self, dialect: Dialect) -> None:
        table = UsageRecord.__table__
        compiled = insert(table).compile(dialect=dialect, column_keys=USAGE_COLUMNS)
        if compiled.positiontup is None:
            raise RuntimeError(f"{dialect.name}: a positional paramstyle is needed for usage inserts")
        self.dialect = dialect
        self.sql = compiled.string
        self.order = tuple(compiled.positiontup)
        self.processors = tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                                for name in self.order)

    def parameters(self, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Rows as positional tuples, each value through its column type's processor."""
        pairs = tuple(zip(self.order, self.processors))
        return [tuple(value if (value := row[name]) is None or process is None else process(value)
                      for name, process in pairs) for row in rows]


def access_line(event: UsageEvent) -> str:
    """One request's access line: never a key, a header or a body."""
    at = datetime.fromtimestamp(event.created_at, UTC).isoformat(timespec="milliseconds")
    return (f"{at} request_id={event.request_id} user_id={event.user_id} "
            f"configuration_id={event.configuration_id or '-'} endpoint={event.endpoint} status={event.status} "
            f"attempts={event.attempts} latency_ms={event.latency_s * 1000:.1f}")


class UsageWriter:
    """The buffer and its batch writer."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, interval_s: float, batch_size: int,
                 access_log: bool) -> None:
        self._sessionmaker = sessionmaker
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.access_log = access_log
        self._buffer: list[UsageEvent] = []
        self._unlogged: list[UsageEvent] = []
        self._prices: dict[str, Any] | None = None
        self._inserter: RowInserter | None = None
        self._lock = asyncio.Lock()
        self.dropped = 0

    def append(self, event: UsageEvent) -> None:
        """Queue a record (hot path: a list append or two)."""
        if self.access_log:
            self._unlogged.append(event)
        buffer = self._buffer
        buffer.append(event)
        if len(buffer) > MAX_BUFFERED:
            excess = len(buffer) - MAX_BUFFERED
            del buffer[:excess]
            self.dropped += excess

    @property
    def pending(self) -> int:
        """Records not yet written."""
        return len(self._buffer)

    async def run(self) -> None:
        """Flush every interval until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("usage flush failed (%s); will retry", exc.__class__.__name__)

    async def flush(self) -> int:
        """Write what was buffered when called (later records wait for the next flush); returns the count."""
        self.log_access()
        async with self._lock:
            taken, self._buffer = self._buffer, []
            done = 0
            try:
                while done < len(taken):
                    batch = taken[done:done + self.batch_size]
                    await self._write(batch)
                    done += len(batch)
            except BaseException:
                # Unwritten records go back in front, to be retried with the next flush.
                self._buffer[:0] = taken[done:]
                raise
            return done

    def log_access(self) -> None:
        """The access lines of the requests since the last call, in one record (buffered, like nginx's)."""
        events, self._unlogged = self._unlogged, []
        if events:
            access_log.info("%s", "\n".join(access_line(event) for event in events))

    async def _write(self, batch: list[UsageEvent]) -> None:
        if self._prices is None:
            self._prices = await asyncio.to_thread(load_price_list)
        rows = [self._row(event) for event in batch]
        last_used: dict[uuid.UUID, datetime] = {}
        for row in rows:
            cid = row["configuration_id"]
            if cid is not None and row["status"] < 400:
                last_used[cid] = max(row["created_at"], last_used.get(cid, row["created_at"]))
        table = LLMConfiguration.__table__
        async with self._sessionmaker() as session:
            connection = await session.connection()
            inserter = self._inserter
            if inserter is None or inserter.dialect is not connection.dialect:
                inserter = self._inserter = RowInserter(connection.dialect)
            await connection.exec_driver_sql(inserter.sql, inserter.parameters(rows))
            if last_used:
                # updated_at keeps its value: it tells when the configuration was edited, not used.
                await session.execute(
                    update(table).where(table.c.id == bindparam("b_id"))
                    .values(last_used_at=bindparam("b_at"), updated_at=table.c.updated_at),
                    [{"b_id": cid, "b_at": at} for cid, at in last_used.items()],
                )
            await session.commit()

    def _row(self, event: UsageEvent) -> dict[str, Any]:
        usage = event.usage
        if usage is None and event.body is not None:
            usage = usage_of_body(event.body)
        prompt, completion = usage or (0, 0)
        return {
            "user_id": event.user_id,
            "configuration_id": event.configuration_id,
            "conversation_id": event.conversation_id,
            "endpoint": event.endpoint,
            "provider": event.provider,
            "model": event.model,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost_usd": cost_usd(self._prices or {}, litellm_provider=event.litellm_provider, model=event.model,
                                 prompt_tokens=prompt, completion_tokens=completion),
            "latency_ms": round(event.latency_s * 1000),
            "status": event.status,
            "error_class": event.error_class,
            "attempts": event.attempts,
            "stream": event.stream,
            "created_at": datetime.fromtimestamp(event.created_at, UTC),
        }


async def usage_ctx(app: web.Application) -> AsyncIterator[None]:
    """The usage writer and its background flusher (usage rows, last_used_at, access lines); a last flush on
    shutdown."""
    settings = app[SETTINGS]
    writer = UsageWriter(app[SESSIONMAKER], interval_s=settings.usage_flush_interval_s,
                         batch_size=settings.usage_batch_size, access_log=settings.access_log)
    app[USAGE] = writer
    async with running(writer.run(), name="usage-flusher"):
        yield
    try:
        await writer.flush()
    except (SQLAlchemyError, OSError) as exc:
        writer.log_access()
        log.warning("final usage flush failed (%s); %d records lost", exc.__class__.__name__, writer.pending)
