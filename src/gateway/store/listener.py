"""PostgreSQL LISTEN on the change channel: other processes' writes reach this process's caches.

A dedicated asyncpg connection (not one from the pool: a pooled connection would be recycled and lose its
LISTEN). After every (re)connection everything is reloaded, since notifications sent while the connection was
down are lost for good.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from gateway.store.changes import CHANNEL, Change, ChangeBus

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("gateway.listener")
PING_INTERVAL_S = 15.0
MAX_BACKOFF_S = 30.0
STARTUP_WAIT_S = 10.0


def asyncpg_dsn(database_url: str) -> str:
    """SQLAlchemy's asyncpg URL as a plain libpq DSN."""
    return "postgresql://" + database_url.split("://", 1)[1]


class ChangeListener:
    """Holds the LISTEN connection and re-opens it when it drops."""

    def __init__(self, dsn: str, bus: ChangeBus) -> None:
        self._dsn = dsn
        self._bus = bus
        self.connected = asyncio.Event()
        self.connections = 0

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._bus.emit_remote(payload)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff."""
        import asyncpg  # here, not at import: a SQLite deployment never loads the driver (start-up, memory)

        backoff = 0.5
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("change listener cannot connect (%s); retrying in %.1f s", exc.__class__.__name__,
                            backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 0.5
            try:
                await self._listen(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("change listener lost its connection (%s); reconnecting", exc.__class__.__name__)
            finally:
                self.connected.clear()
                conn.terminate()

    async def _listen(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        self.connections += 1
        # Whatever was announced while no connection listened is unknown: start every cache over.
        self._bus.emit_local(Change("all"))
        self.connected.set()
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), PING_INTERVAL_S)
            except TimeoutError:
                # A silent network drop sends no FIN: only a round trip tells.
                await conn.execute("SELECT 1", timeout=PING_INTERVAL_S)
