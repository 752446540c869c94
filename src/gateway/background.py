"""Background tasks that live as long as the app: started in a cleanup_ctx, restarted (logged and counted) when
they crash, cancelled and awaited on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from prometheus_client import Counter

log = logging.getLogger("gateway.background")
MAX_RESTART_DELAY_S = 30.0


async def _supervise(start: Callable[[], Coroutine[Any, Any, None]], name: str, crashes: Counter | None,
                     restart_delay_s: float) -> None:
    delay = restart_delay_s
    while True:
        try:
            await start()
            return
        except Exception as exc:  # noqa: BLE001 - whatever killed it, a silently dead task is worse
            # The class name only: an exception's text may quote a row, a header or a body.
            log.error("background task %s crashed (%s); restarting in %.1f s", name, exc.__class__.__name__, delay)
            if crashes is not None:
                crashes.labels(name).inc()
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RESTART_DELAY_S)


@contextlib.asynccontextmanager
async def running(start: Callable[[], Coroutine[Any, Any, None]], *, name: str, crashes: Counter | None = None,
                  restart_delay_s: float = 1.0) -> AsyncIterator[asyncio.Task[None]]:
    """Run `start()` as a task for the duration of the block, started again (after a growing delay) each time it
    raises, each crash logged and counted in `crashes` (labelled by task name); cancelled and awaited after."""
    task = asyncio.get_running_loop().create_task(_supervise(start, name, crashes, restart_delay_s), name=name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
