"""The change bus's transports for the app's life: on SQLite a change_log poller, on PostgreSQL a LISTEN task
(the transports themselves live in gateway.store)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.background import running
from gateway.store.change_log import ChangePoller, last_change_id
from gateway.store.listener import STARTUP_WAIT_S, ChangeListener, asyncpg_dsn
from gateway.web.appkeys import CHANGES, ENGINE, METRICS, SESSIONMAKER, SETTINGS

log = logging.getLogger("gateway.listener")


async def change_log_ctx(app: web.Application) -> AsyncIterator[None]:
    """On SQLite, poll change_log for the life of the app (after the database context)."""
    if not app[SETTINGS].is_sqlite:
        yield
        return
    sessionmaker = app[SESSIONMAKER]
    async with sessionmaker() as session:
        poller = ChangePoller(app[CHANGES], await last_change_id(session))
    engine = app[ENGINE]
    async with running(lambda: poller.run(engine), name="change-log-poller", crashes=app[METRICS].task_crashes):
        yield


async def listener_ctx(app: web.Application) -> AsyncIterator[None]:
    """On PostgreSQL, a LISTEN task for the life of the app; startup waits briefly for its first connection."""
    settings = app[SETTINGS]
    if settings.is_sqlite:
        yield
        return
    listener = ChangeListener(asyncpg_dsn(settings.database_url), app[CHANGES])
    async with running(listener.run, name="change-listener", crashes=app[METRICS].task_crashes):
        try:
            await asyncio.wait_for(listener.connected.wait(), STARTUP_WAIT_S)
        except TimeoutError:
            log.warning("change listener not connected yet; this process relies on local changes until it is")
        yield
