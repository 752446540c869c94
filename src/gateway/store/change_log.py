"""Cache invalidation between processes on SQLite (several workers, or the CLI beside a running gateway).

PostgreSQL carries changes with LISTEN/NOTIFY; SQLite has nothing like it, so a write adds rows to change_log
in its own transaction and every process polls for rows newer than the last it saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from gateway.store.changes import Change, ChangeBus
from gateway.store.models import ChangeLog, utcnow

POLL_INTERVAL_S = 0.25
KEEP_FOR = timedelta(minutes=10)
log = logging.getLogger("gateway.change_log")


async def append(session: AsyncSession, changes: Iterable[Change], *, origin: str) -> None:
    """Record changes in the writing transaction, and drop rows every poller has long seen."""
    now = utcnow()
    await session.execute(insert(ChangeLog), [
        {"kind": c.kind, "user_id": c.user_id, "origin": origin, "created_at": now} for c in changes
    ])
    await session.execute(delete(ChangeLog).where(ChangeLog.created_at < now - KEEP_FOR))


# The poll, built once: it runs four times a second in every SQLite process, busy or idle.
NEWER = (select(ChangeLog.id, ChangeLog.kind, ChangeLog.user_id, ChangeLog.origin)
         .where(ChangeLog.id > bindparam("last_id")).order_by(ChangeLog.id))


class ChangePoller:
    """Delivers other processes' change_log rows to this process's bus."""

    def __init__(self, bus: ChangeBus, last_id: int) -> None:
        self.bus = bus
        self.last_id = last_id

    async def poll_once(self, connection: AsyncConnection) -> None:
        """Emit every change newer than the last one seen (ours were delivered at commit)."""
        rows = (await connection.execute(NEWER, {"last_id": self.last_id})).all()
        for row_id, kind, user_id, origin in rows:
            self.last_id = row_id
            if origin != self.bus.origin:
                self.bus.emit_local(Change(kind, user_id))

    async def run(self, engine: AsyncEngine) -> None:
        """Poll until cancelled: a connection of the engine's pool, no ORM session (a read of ids)."""
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            try:
                async with engine.connect() as connection:
                    await self.poll_once(connection)
            except (SQLAlchemyError, OSError) as exc:
                # A busy or briefly unavailable file: try again next round, nothing is lost (ids only grow).
                log.warning("change log poll failed: %s", exc.__class__.__name__)


async def last_change_id(session: AsyncSession) -> int:
    """The newest change_log id (0 when empty): a new poller starts after it."""
    return (await session.execute(select(func.coalesce(func.max(ChangeLog.id), 0)))).scalar_one()
