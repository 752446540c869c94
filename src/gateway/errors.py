"""The gateway's one error hierarchy (plain Python; gateway.web.responses renders it in OpenAI's envelope).

    GatewayError (500 server_error)
    ├── BadRequest (400 invalid_request_error)
    │   └── InvalidJSON (400)
    ├── Unauthorized (401 authentication_error)
    ├── Forbidden (403 permission_error)
    ├── NotFound (404 not_found_error)
    ├── MethodNotAllowed (405)
    ├── RequestTimeout (408 invalid_request_error)
    ├── Conflict (409 conflict_error)
    ├── PayloadTooLarge (413)
    ├── UnsupportedMediaType (415 invalid_request_error)
    ├── Unprocessable (422 invalid_request_error)
    ├── RateLimited (429 rate_limit_error)
    │   └── WorkerOverloaded (429: the caller's share of the translation workers is in use)
    ├── ServiceUnavailable (503 service_unavailable)
    │   └── TranslationUnavailable (503; the gateway's translation worker failed, not the provider: it died, was
    │       │                       restarted over its memory ceiling, or answered garbage)
    │       └── WorkerTimeout (504: a translated call passed the gateway's deadline)
    └── UpstreamError (502 upstream_error; carries the upstream's status when it answered)
        └── UpstreamTimeout (504)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


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


class RequestTimeout(GatewayError):
    status, type, code = 408, "invalid_request_error", "request_timeout"


class PayloadTooLarge(GatewayError):
    status, type, code = 413, "invalid_request_error", "payload_too_large"


class UnsupportedMediaType(GatewayError):
    status, type, code = 415, "invalid_request_error", "unsupported_media_type"


class Unprocessable(GatewayError):
    status, type, code = 422, "invalid_request_error", "validation_error"


class RateLimited(GatewayError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class ServiceUnavailable(GatewayError):
    status, type, code = 503, "service_unavailable", "service_unavailable"


class TranslationUnavailable(ServiceUnavailable):
    """The gateway's own translation worker failed a call (it died, timed out, was overloaded or answered
    garbage): retryable, and never counted against the provider's configuration."""

    code = "translation_unavailable"


class UpstreamError(GatewayError):
    status, type, code = 502, "upstream_error", "upstream_error"


class UpstreamTimeout(UpstreamError):
    status, code = 504, "upstream_timeout"


# The translation worker's own failures, each a class of its own: none of them says anything about the provider.
class WorkerOverloaded(RateLimited):
    code = "translation_share_exceeded"


class WorkerTimeout(TranslationUnavailable):
    status, code = 504, "translation_deadline_exceeded"


@dataclass(frozen=True, slots=True)
class ErrorFields:
    """What an upstream's error answer says; every field None when it says nothing readable."""

    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None
    reasons: frozenset[str] = frozenset()  # Google's error.status and details[].reason
    readable: bool = False  # the body was JSON or JSON server-sent events

    @property
    def codes(self) -> set[str]:
        """Error codes, types and reasons, lower-cased."""
        return {c.lower() for c in (self.code, self.type, *self.reasons) if c}


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _error_object(data: Any) -> dict[str, Any] | str | None:
    """The part of a JSON answer or event that describes the error."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, (dict, str)) and error:
        return error
    response = data.get("response")  # a streamed Responses API's response.failed event
    if isinstance(response, dict) and isinstance(response.get("error"), dict):
        return dict(response["error"])
    if data.get("type") == "error" or isinstance(data.get("message"), str):
        return data  # the Responses API's streamed error event, or a bare {"message": ...}
    return None


def _fields(error: dict[str, Any] | str) -> ErrorFields:
    if isinstance(error, str):
        return ErrorFields(message=error, readable=True)
    reasons = {r for r in [_text(error.get("status"))] if r}
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
            reasons.add(detail["reason"])
    type_ = _text(error.get("type"))
    return ErrorFields(message=_text(error.get("message")), type=None if type_ == "error" else type_,
                       code=_text(error.get("code")), param=_text(error.get("param")), reasons=frozenset(reasons),
                       readable=True)


def _sse_events(raw: bytes) -> list[Any]:
    """The JSON data of each server-sent event in raw (one data line each, as providers send errors)."""
    found = []
    for line in raw.splitlines():
        if line.startswith(b"data:"):
            try:
                found.append(orjson.loads(line[5:]))
            except orjson.JSONDecodeError:
                continue
    return found


def parse_error_body(raw: bytes) -> ErrorFields:
    """The error in an upstream's answer body: OpenAI's, Anthropic's or Google's JSON envelope, or the error
    event of a server-sent stream (a streamed Responses API error, Anthropic's streamed 529)."""
    try:
        candidates = [orjson.loads(raw)]
    except orjson.JSONDecodeError:
        candidates = _sse_events(raw)
        if not candidates:
            return ErrorFields()
    for data in candidates:
        error = _error_object(data)
        if error is not None:
            return _fields(error)
    return ErrorFields(readable=True)
