"""Engine and session factory for PostgreSQL (asyncpg) and SQLite (aiosqlite), same code for both."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import CursorResult, Result, event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # SQLite enforces foreign keys only when asked, per connection; WAL lets readers run beside the writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Each pooled connection has its own page cache (2 MiB by default), filled by the web page's usage queries and
    # kept: 256 KiB holds what a usage batch and a lookup touch; the operating system caches the file anyway.
    cursor.execute("PRAGMA cache_size=-256")
    cursor.close()


# A C function that returns None for None (an empty dict's get): binding a NULL runs no Python frame, three per
# usage row.
_null = cast(Callable[[None], None], {}.get)


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine that never puts bound parameters (keys, tokens) into its error messages."""
    if url.startswith("sqlite"):
        # sqlite3 binds int, float, str and bytes as they are, but looks every None up in its adapter registry
        # and its protocol, and each failed lookup formats an AttributeError: a usage row's NULLs cost more than
        # its other values together. This adapter is found at once and binds NULL all the same (process-wide:
        # the module's registry is).
        sqlite3.register_adapter(type(None), _null)
        engine = create_async_engine(url, hide_parameters=True, connect_args={"timeout": 10}, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 10)
        kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, hide_parameters=True, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def dialect_name(session: AsyncSession) -> str:
    """The database behind a session: "postgresql" or "sqlite" (where row locks, NOTIFY and dates differ)."""
    return session.get_bind().dialect.name


def rows_affected(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (for those statements `execute` returns a CursorResult)."""
    return cast(CursorResult[Any], result).rowcount


async def take_sqlite_write_lock(session: AsyncSession) -> None:
    """SQLite has no row locks: take its database-wide write lock now, before anything is read, so the reads and
    writes that follow are one serialised unit. A write that matches no row is enough to take it."""
    await session.execute(text("UPDATE change_log SET id = id WHERE 0"))
