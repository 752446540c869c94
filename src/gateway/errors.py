"""The gateway's one error hierarchy, and the middleware that renders every error in OpenAI's envelope.

    GatewayError (500 server_error)
    ├── BadRequest (400 invalid_request_error)
    │   └── InvalidJSON (400)
    ├── Unauthorized (401 authentication_error)
    ├── Forbidden (403 permission_error)
    ├── NotFound (404 not_found_error)
    ├── MethodNotAllowed (405)
    ├── Conflict (409 conflict_error)
    ├── PayloadTooLarge (413)
    ├── Unprocessable (422 invalid_request_error)
    ├── RateLimited (429 rate_limit_error)
    ├── ServiceUnavailable (503 service_unavailable)
    └── UpstreamError (502 upstream_error; carries the upstream's status when it answered)
        └── UpstreamTimeout (504)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import exc as sa_exc

log = logging.getLogger("gateway.errors")


class GatewayError(Exception):
    """Base of every error a client may see; knows its status, type and code."""

    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        """OpenAI's error shape."""
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


class BadRequest(GatewayError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class InvalidJSON(BadRequest):
    code = "invalid_json"


class Unauthorized(GatewayError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class Forbidden(GatewayError):
    status, type, code = 403, "permission_error", "forbidden"


class NotFound(GatewayError):
    status, type, code = 404, "not_found_error", "not_found"


class MethodNotAllowed(GatewayError):
    status, type, code = 405, "invalid_request_error", "method_not_allowed"


class Conflict(GatewayError):
    status, type, code = 409, "conflict_error", "conflict"


class PayloadTooLarge(GatewayError):
    status, type, code = 413, "invalid_request_error", "payload_too_large"


class Unprocessable(GatewayError):
    status, type, code = 422, "invalid_request_error", "validation_error"


class RateLimited(GatewayError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class ServiceUnavailable(GatewayError):
    status, type, code = 503, "service_unavailable", "service_unavailable"


class UpstreamError(GatewayError):
    status, type, code = 502, "upstream_error", "upstream_error"


class UpstreamTimeout(UpstreamError):
    status, code = 504, "upstream_timeout"


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
        log.warning("database unavailable on %s %s (%s)", request.method, request.path, exc.__class__.__name__)
        return error_response(ServiceUnavailable(
            "The database is unavailable; try again shortly", code="database_unavailable",
            headers={"Retry-After": "5"}))
    # The traceback goes to the log (never the client); request bodies are not logged.
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(GatewayError("Internal server error"))
