"""Rendering errors as responses: every GatewayError, router 404/405 and unexpected exception in OpenAI's
envelope. The error tree itself is plain Python in gateway.errors."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from sqlalchemy import exc as sa_exc

from gateway.errors import GatewayError, MethodNotAllowed, NotFound, PayloadTooLarge, ServiceUnavailable
from gateway.logs import field_value

log = logging.getLogger("gateway.errors")


def error_response(error: GatewayError) -> web.Response:
    """Render an error as JSON in OpenAI's envelope."""
    return web.Response(
        body=orjson.dumps(error.envelope()),
        status=error.status,
        content_type="application/json",
        headers=error.headers,
    )


def _from_http_exception(exc: web.HTTPException) -> GatewayError:
    if exc.status == 404:
        return NotFound("No such endpoint")
    if exc.status == 405:
        return MethodNotAllowed("Method not allowed on this endpoint")
    if exc.status == 413:
        return PayloadTooLarge("Request body is too large")
    return GatewayError(exc.reason or "HTTP error", status=exc.status, code="http_error")


def _database_unreachable(exc: Exception) -> bool:
    """The database cannot be reached right now (down, restarting, pool exhausted): a retryable 503, not a 500.
    asyncpg's failed connect surfaces unwrapped as an OSError (ConnectionRefusedError...), hence ConnectionError."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, ConnectionError))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_answer(request: web.Request, exc: Exception) -> web.Response:
    """Every error, router 404/405 and unexpected ones included, as OpenAI's envelope; redirects re-raised.
    Call it from an `except Exception` block (the app's middleware)."""
    if isinstance(exc, GatewayError):
        return error_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return error_response(_from_http_exception(exc))
    if _database_unreachable(exc):
        log.warning("database unavailable on %s %s (%s)", request.method, field_value(request.path),
                    exc.__class__.__name__)
        return error_response(ServiceUnavailable(
            "The database is unavailable; try again shortly", code="database_unavailable",
            headers={"Retry-After": "5"}))
    # The traceback goes to the log (never the client); request bodies are not logged.
    log.exception("unhandled error on %s %s", request.method, field_value(request.path))
    return error_response(GatewayError("Internal server error"))
