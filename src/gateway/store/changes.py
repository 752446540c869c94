"""Change notifications that keep every cache fresh: at once in this process, and across processes and
hosts through PostgreSQL LISTEN/NOTIFY (sent inside the writing transaction, so it arrives only on commit)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.db import dialect_name

CHANNEL = "llm_gateway_changes"
log = logging.getLogger("gateway.changes")


@dataclass(frozen=True)
class Change:
    """What changed: kind is `tokens`, `users`, `configurations`, `conversations`, or `all` (reload everything)."""

    kind: str
    user_id: str | None = None

    def encode(self, origin: str = "") -> str:
        """The NOTIFY payload; `origin` names the process that sent it."""
        return orjson.dumps({"kind": self.kind, "user_id": self.user_id, "origin": origin}).decode()

    @classmethod
    def decode(cls, payload: str) -> tuple[Change, str]:
        """Parse a NOTIFY payload into (change, origin); anything unreadable means reload everything."""
        try:
            data = orjson.loads(payload)
            return cls(kind=str(data["kind"]), user_id=data.get("user_id")), str(data.get("origin") or "")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return cls(kind="all"), ""


Subscriber = Callable[[Change], None]


class ChangeBus:
    """Fan-out of changes to the caches of this process."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        # Tags this process's notifications, so its listener does not apply its own changes a second time.
        self.origin = secrets.token_hex(8)

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call `subscriber` for every change, local or remote."""
        self._subscribers.append(subscriber)

    def emit_remote(self, payload: str) -> None:
        """Deliver a NOTIFY payload from another process (our own were delivered at commit)."""
        change, origin = Change.decode(payload)
        if origin != self.origin:
            self.emit_local(change)

    def emit_local(self, change: Change) -> None:
        """Deliver a change to this process's caches."""
        for subscriber in self._subscribers:
            subscriber(change)

    async def commit(self, session: AsyncSession, *changes: Change) -> None:
        """Commit the session's transaction with its changes announced to every process: NOTIFY on PostgreSQL,
        rows of change_log (polled by the other processes) on SQLite."""
        if dialect_name(session) == "postgresql":
            for change in changes:
                await session.execute(select(func.pg_notify(CHANNEL, change.encode(self.origin))))
        elif changes:
            from gateway.store.change_log import append

            await append(session, changes, origin=self.origin)
        await session.commit()
        for change in changes:
            self.emit_local(change)
