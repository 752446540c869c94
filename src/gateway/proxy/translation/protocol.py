"""What the gateway and its translation worker say to each other, shared by both sides (no litellm here).

Over the worker's stdin/stdout pipes, one JSON object per line: the spawn configuration (the secret and the
URL policy's inputs, first line of stdin), `{"ready": ...}` once litellm is imported and the socket listens, and
name lookups the worker asks the gateway for (`{"resolve": id, ...}` → `{"resolved": id, ...}`): every address
a translated request connects to is judged by the gateway's own resolver.

Over the Unix socket, one POST per translated call: the target (key included), the client's body and the stream
flag in; out, at once (before the upstream is called: the acknowledgment), a 200 whose body is a sequence of
frames: one kind byte, a 4-byte big-endian length, the payload. DATA: the whole OpenAI-shaped answer, or one SSE
frame of a stream to relay as is; ERROR: an error document; END: the answer finished as it should (its absence:
the worker died). An error document carries what UpstreamError and its
cause need (status, message, code, type, param, headers such as Retry-After, the transport failure's class), so
the gateway rebuilds the error the in-process translation raised: the same failover, cooldown and client error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp.client_reqrep import ConnectionKey
from yarl import URL

from gateway.errors import BadRequest, GatewayError, UpstreamError, UpstreamTimeout, WorkerCrashed
from gateway.ssrf import UnsafeURLError

WORKER_MODULE = "gateway.proxy.translation.worker"
PATH = "/translate"
SECRET_HEADER = "X-Translation-Secret"
FRAMES_TYPE = "application/vnd.llm-gateway.translation-frames"
DATA, ERROR, END = b"D", b"E", b"Z"
HEAD = 5  # kind byte + 4-byte length
# Error classes the worker may report; anything else arrives as UpstreamError.
ERRORS: dict[str, type[GatewayError]] = {cls.__name__: cls for cls in (
    GatewayError, BadRequest, UpstreamError, UpstreamTimeout)}


async def messages(lines: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a pipe, one per line, until it ends; a line that is no JSON object is skipped."""
    while line := await lines.readline():
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(message, dict):
            yield message


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    """One frame of a translated stream."""
    return kind + len(payload).to_bytes(4, "big") + payload


def _cause_doc(cause: BaseException | None) -> dict[str, Any] | None:
    """The transport failure behind an error, by class (and errno), never its message: aiohttp's quote URLs."""
    if cause is None:
        return None
    doc: dict[str, Any] = {"class": cause.__class__.__name__}
    if isinstance(cause, UnsafeURLError):
        doc.update(reason=cause.reason, category=cause.category)
    elif isinstance(cause, aiohttp.ClientConnectorError):
        doc.update(errno=cause.os_error.errno, strerror=cause.os_error.strerror)
    return doc


def error_doc(error: GatewayError) -> bytes:
    """An error (and its cause) as the worker sends it."""
    return orjson.dumps({
        "class": error.__class__.__name__, "message": error.message, "status": error.status, "code": error.code,
        "type": error.type, "param": error.param, "headers": error.headers, "cause": _cause_doc(error.__cause__),
    })


def _connection_key(base_url: str) -> ConnectionKey:
    url = URL(base_url)
    fields: dict[str, Any] = dict.fromkeys(ConnectionKey._fields)  # its fields change between aiohttp releases
    fields.update(host=url.host or "", port=url.port, is_ssl=url.scheme == "https", ssl=True)
    return ConnectionKey(**fields)


def _cause(doc: Any, base_url: str) -> BaseException | None:
    """The transport failure an error was raised from, rebuilt as the same class (the configuration test names
    the cause after it, the failure log line prints its class)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("class"), str):
        return None
    name = doc["class"]
    if name == "UnsafeURLError":
        return UnsafeURLError(str(doc.get("reason")), category=str(doc.get("category")))
    if name == "TimeoutError":
        return TimeoutError()
    cls = getattr(aiohttp, name, None)
    if not (isinstance(cls, type) and issubclass(cls, aiohttp.ClientError)):
        return aiohttp.ClientConnectionError()
    if issubclass(cls, aiohttp.ClientConnectorError):
        errno, strerror = doc.get("errno"), doc.get("strerror")
        os_error = OSError(errno, strerror) if isinstance(errno, int) else OSError(strerror or name)
        try:
            return cls(_connection_key(base_url), os_error)
        except TypeError:  # a subclass with a constructor of its own (certificate errors)
            return aiohttp.ClientConnectorError(_connection_key(base_url), os_error)
    try:
        return cls()
    except TypeError:
        return aiohttp.ClientConnectionError()


def error_of(raw: bytes, base_url: str) -> GatewayError:
    """The error the worker described, raised from its cause as the in-process translation raised it."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("message"), str):
        return worker_failure("an unreadable error")
    cls = ERRORS.get(str(doc.get("class")), UpstreamError)
    headers = doc.get("headers")
    error = cls(doc["message"], status=int(doc["status"]) if isinstance(doc.get("status"), int) else None,
                code=doc["code"] if isinstance(doc.get("code"), str) else None,
                param=doc["param"] if isinstance(doc.get("param"), str) else None,
                headers={str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else None)
    if isinstance(doc.get("type"), str) and doc["type"] != error.type:
        error.type = doc["type"]
    error.__cause__ = _cause(doc.get("cause"), base_url)
    error.__suppress_context__ = True  # as `raise error from cause` does
    return error


def worker_failure(what: str) -> WorkerCrashed:
    """The error of a call the worker did not answer (it died, or answered what it never sends)."""
    return WorkerCrashed(f"The translation worker failed ({what}); the next request starts a new one")
