"""Liveness and readiness probes."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import ServiceUnavailable
from gateway.web.appkeys import ADMISSION, ENGINE


async def healthz(request: web.Request) -> web.Response:
    """The process is alive (overloaded or not: restarting it would not help)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The process takes new traffic: not overloaded (a load balancer shifts traffic away), the database answers."""
    admission = request.config_dict[ADMISSION]
    reason = admission.overloaded()
    if reason is not None:
        raise ServiceUnavailable(f"Not ready: {reason}", code="gateway_overloaded",
                                 headers={"Retry-After": admission.retry_after})
    try:
        async with request.config_dict[ENGINE].connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        raise ServiceUnavailable("Database is not reachable") from exc
    return web.json_response({"status": "ready"})
