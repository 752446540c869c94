"""Running the server process(es)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.app import create_app
from gateway.cli.bootstrap import StartupError
from gateway.settings import Settings, public_database_url

GC_THRESHOLDS = (7000, 20, 100)  # CPython's defaults are (700, 10, 10)


def check_port(settings: Settings) -> None:
    """Refuse at once, in one line, when host:port cannot be listened on (taken, or no such address)."""
    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupError(f"cannot listen on {settings.host}:{settings.port}: {reason.lower()} "
                           "(LLM_GATEWAY_HOST / LLM_GATEWAY_PORT, or --host / --port)") from None


def base_url(settings: Settings) -> str:
    """Where a browser on this machine reaches the gateway (a wildcard host is reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    return f"http://{'[' + host + ']' if ':' in host else host}:{settings.port}"


def startup_block(settings: Settings, admin_token: str | None) -> str:
    """What an operator needs to know at start: version, database, data folder, addresses, the first token."""
    url = base_url(settings)
    admin = (f"created the user 'admin'; its token, shown once:\n    {admin_token}" if admin_token
             else "not created (users exist; lost the token? `llm-gateway tokens create admin`)")
    return "\n".join([
        f"llm-gateway {__version__}",
        f"  database   {public_database_url(settings.database_url)}",
        f"  data       {settings.data_dir}",
        f"  web page   {url}/ui/",
        f"  API docs   {url}/api/docs",
        f"  admin      {admin}",
    ])


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
        # A request's objects die by reference counting, not by the collector: collect the young generation
        # less often, and the old ones rarely (full collections are the p99 pauses of a busy Python server).
        gc.set_threshold(*GC_THRESHOLDS)

    app.on_startup.append(freeze)
    return app


def server_options(settings: Settings) -> dict[str, Any]:
    """How the HTTP server treats its connections (web.run_app / AppRunner keywords)."""
    return {
        # aiohttp arms this timer when a connection opens and again after each answer, and closes the connection
        # if no complete request head arrived by then: a header timeout (slowloris) and the idle keep-alive one.
        "keepalive_timeout": settings.client_header_timeout_s,
        # A client that leaves cancels its handler: a stream stops reading (and holding) its upstream at once,
        # not when the upstream next writes or times out. The test server runs this way too.
        "handler_cancellation": True,
        "access_log": None,  # the gateway writes its own access lines, buffered with the usage rows
    }


def _run_worker(settings: Settings, *, reuse_port: bool) -> None:
    """One serving process: its own app, loop and connections; with reuse_port, the kernel shares the port."""
    _install_uvloop()
    web.run_app(
        _frozen_app(settings),
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port or None,
        print=lambda msg: print(f"llm-gateway: listening on http://{settings.host}:{settings.port}", flush=True),
        **server_options(settings),
    )


def _stop(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _supervise(settings: Settings) -> int:
    """Fork `workers` processes sharing the port (SO_REUSEPORT); stop them all when one dies or on SIGTERM."""
    # Imported here: one serving process (the default) never needs them.
    import multiprocessing
    from multiprocessing.connection import wait

    fork = multiprocessing.get_context("fork")
    workers = [fork.Process(target=_run_worker, args=(settings,), kwargs={"reuse_port": True}, daemon=True,
                            name=f"llm-gateway-worker-{n}") for n in range(settings.workers)]
    signal.signal(signal.SIGTERM, _stop)
    try:
        for worker in workers:
            worker.start()
        ready = wait([w.sentinel for w in workers])
        dead = next(w for w in workers if w.sentinel in ready)
        dead.join()  # its sentinel closes a moment before it can be reaped
        logging.getLogger(__name__).error("worker %s exited with %s; stopping the others", dead.pid, dead.exitcode)
        return 1
    except (SystemExit, KeyboardInterrupt):
        return 0
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: aiohttp shuts the worker down cleanly
        for worker in workers:
            worker.join(15)


def serve(settings: Settings) -> int:
    """Serve on host:port until interrupted: in this process, or in `settings.workers` forked ones."""
    if settings.workers > 1:
        return _supervise(settings)
    _run_worker(settings, reuse_port=False)
    return 0
