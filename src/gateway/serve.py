"""Running the server process(es)."""

from __future__ import annotations

import asyncio
import gc
import logging

from aiohttp import web

from gateway.app import create_app
from gateway.settings import Settings


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _frozen_app(settings: Settings) -> web.Application:
    app = create_app(settings)

    async def freeze(_app: web.Application) -> None:
        # Start-up objects never die: keep them out of every later full collection.
        gc.collect()
        gc.freeze()

    app.on_startup.append(freeze)
    return app


def serve(settings: Settings) -> None:
    """Serve on host:port until interrupted."""
    logging.getLogger().setLevel(settings.log_level.upper())
    _install_uvloop()
    web.run_app(
        _frozen_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=lambda msg: print(f"llm-gateway: listening on http://{settings.host}:{settings.port}", flush=True),
    )
