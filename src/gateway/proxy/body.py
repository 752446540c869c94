"""The /v1 request body: read under a deadline and a size bound, and checked by one rule for every content type.

The rule: a body goes upstream only as what the gateway parsed and checked (no routing field, the model its
configuration's). JSON is accepted everywhere (without a Content-Type too, and with a UTF-8 byte order mark,
which is dropped); multipart forms only where OpenAI's API takes them (uploads), where they are parsed and
written anew; every other type is refused with 415 naming what the route accepts, before a byte of it is read.
An empty body passes only where no JSON object is required. A body aiohttp decompressed (gzip, deflate) is
checked as what it decompressed to; an encoding it cannot undo is refused.
"""

from __future__ import annotations

import asyncio
import email.message
import email.parser
import email.policy
import email.utils
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import StreamReader, web

from gateway.errors import BadRequest, InvalidJSON, PayloadTooLarge, RequestTimeout, UnsupportedMediaType

# Body fields that would steer routing or credentials (LiteLLM's CVE-2024-6587): the gateway's alone.
ROUTING_FIELDS = frozenset({"api_base", "base_url", "api_key", "extra_headers", "custom_llm_provider",
                            "litellm_params", "mock_response"})
JSON = "application/json"
FORM = "multipart/form-data"
# Endpoints that answer nothing useful to a body that is not a JSON object.
JSON_OBJECT_PATHS = frozenset({"/chat/completions", "/completions", "/embeddings", "/responses"})
# OpenAI's endpoints that take multipart forms (plus /uploads/{id}/parts, see takes_forms).
FORM_PATHS = frozenset({"/audio/transcriptions", "/audio/translations", "/files", "/images/edits",
                        "/images/variations"})
# What aiohttp's server undoes before the handler reads a byte (Brotli and zstd only with optional packages).
DECODED_ENCODINGS = frozenset({"", "identity", "gzip", "deflate"})
BOM = b"\xef\xbb\xbf"
_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.HTTP)


def takes_forms(path: str) -> bool:
    """Whether a /v1 path takes multipart forms as well as JSON."""
    return path in FORM_PATHS or (path.startswith("/uploads/") and path.endswith("/parts"))


def media_type(request: web.Request, path: str) -> str:
    """JSON or FORM: how the body will be read; UnsupportedMediaType for anything else."""
    headers = request.headers
    encoding = headers.get("Content-Encoding", "").lower()  # as aiohttp reads it: " gzip" is not decoded
    if encoding not in DECODED_ENCODINGS:
        raise UnsupportedMediaType("Content-Encoding must be gzip or deflate, or none", param="Content-Encoding",
                                   code="unsupported_content_encoding")
    raw = headers.get("Content-Type")
    if raw is None or raw == JSON:  # what the SDKs send, without a parse
        return JSON
    kind = request.content_type  # aiohttp's parse: lower case, without parameters
    if kind == JSON:
        return JSON
    if kind == FORM and takes_forms(path):
        return FORM
    accepted = f"{JSON} or {FORM}" if takes_forms(path) else JSON
    raise UnsupportedMediaType(f"This endpoint accepts {accepted} request bodies", param="Content-Type")


async def read(request: web.Request, *, max_bytes: int, timeout_s: float, take: Callable[[int], None]) -> bytes:
    """The whole body: PayloadTooLarge past `max_bytes`, RequestTimeout when it takes longer than `timeout_s`.
    `take(n)` is told of every byte before it is kept (a declared length at once) and may refuse by raising."""
    declared = request.content_length or 0
    if declared > max_bytes:
        raise PayloadTooLarge("Request body is too large", param="body")
    if declared and request.headers.get("Content-Encoding", "").lower() in ("", "identity"):
        take(declared)  # refused before a byte is read when it does not fit
    else:
        declared = 0  # compressed or chunked: taken as it comes
    content = request.content
    try:
        if content.is_eof():  # the whole body came with the head (most requests): no timer, no coroutine
            raw = content.read_nowait()
            if len(raw) > max_bytes:
                raise PayloadTooLarge("Request body is too large", param="body")
            if len(raw) > declared:
                take(len(raw) - declared)
            return raw
        # A timer that fails the read, cheaper than asyncio.timeout (~10k instructions a request less, by icount).
        loop = asyncio.get_running_loop()
        timer = loop.call_at(loop.time() + timeout_s, _expire, content)
        try:
            return await _collect(content, max_bytes, declared, take)
        finally:
            timer.cancel()
    except TimeoutError:
        raise RequestTimeout(f"The request body did not arrive within {timeout_s:g} s", param="body",
                             headers={"Connection": "close"}) from None
    except web.RequestPayloadError:  # aiohttp could not undo its Content-Encoding or its chunked framing
        raise BadRequest("The request body could not be decoded as its headers say", param="body",
                         code="invalid_body_encoding") from None


class BodyTimedOut(TimeoutError):
    """The body's read deadline passed (a TimeoutError: aiohttp's lingering read after the answer expects one)."""


def _expire(content: StreamReader) -> None:
    content.set_exception(BodyTimedOut())


async def _collect(content: StreamReader, max_bytes: int, counted: int, take: Callable[[int], None]) -> bytes:
    chunks = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge("Request body is too large", param="body")
        if size > counted:
            take(size - counted)
            counted = size
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def loads(raw: bytes) -> Any:
    """JSON text parsed (orjson.JSONDecodeError when it is not), a UTF-8 byte order mark ignored as RFC 8259
    allows: the upstream gets the body written anew, without it."""
    return orjson.loads(raw[len(BOM):] if raw.startswith(BOM) else raw)


def json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object body, without any routing field; 400 naming what is wrong."""
    try:
        body = loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidJSON("Request body is not valid JSON", param="body") from None
    if not isinstance(body, dict):
        raise InvalidJSON("Request body must be a JSON object", param="body")
    refuse_routing_fields(body)
    return body


def refuse_routing_fields(names: Any) -> None:
    """400 naming the first routing field among `names` (any iterable of field names), if any."""
    refused = ROUTING_FIELDS.intersection(names)
    if refused:
        field = sorted(refused)[0]
        raise BadRequest(f"Field '{field}' is not allowed: the gateway decides where requests go and with "
                         "which key", param=field, code="routing_field_not_allowed")


@dataclass(frozen=True, slots=True)
class Part:
    """One field of a multipart form: text, or a file when it has a filename."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class Form:
    """A multipart form as the gateway read it; sent upstream written anew, so the upstream reads what was
    checked (one header of each kind per part, plain parameters, no preamble)."""

    boundary: bytes
    parts: tuple[Part, ...]

    @property
    def content_type(self) -> str:
        """The Content-Type the form is sent with."""
        return f'{FORM}; boundary="{self.boundary.decode("latin-1")}"'

    def payload(self, model: str) -> bytes:
        """The form as sent to a configuration whose model is `model`: every `model` field says so."""
        delimiter = b"--" + self.boundary
        out = []
        for part in self.parts:
            out.append(delimiter + b'\r\nContent-Disposition: form-data; name="' + _quoted(part.name) + b'"')
            if part.filename is not None:
                out.append(b'; filename="' + _quoted(part.filename) + b'"')
            if part.name == "model":
                out.append(b"\r\n\r\n" + model.encode() + b"\r\n")
                continue
            if part.content_type is not None:
                out.append(b"\r\nContent-Type: " + part.content_type.encode("latin-1"))
            out.append(b"\r\n\r\n")
            out.append(part.data)
            out.append(b"\r\n")
        out.append(delimiter + b"--\r\n")
        return b"".join(out)


def form(content_type: str, raw: bytes) -> Form:
    """A multipart/form-data body, without any routing field; 400 naming what is wrong."""
    boundary = _boundary(content_type)
    delimiter = b"--" + boundary
    if raw.startswith(delimiter):
        pos = len(delimiter)
    else:  # after a preamble, which is dropped
        found = raw.find(b"\r\n" + delimiter)
        if found < 0:
            raise _bad_form("no part matches the boundary")
        pos = found + 2 + len(delimiter)
    separator = b"\r\n" + delimiter
    parts = []
    while not raw.startswith(b"--", pos):
        line_end = raw.find(b"\r\n", pos)
        if line_end < 0 or raw[pos:line_end].strip(b" \t"):
            raise _bad_form("a boundary line has more than the boundary")
        end = raw.find(separator, line_end + 2)
        if end < 0:
            raise _bad_form("the closing boundary is missing")
        parts.append(_part(raw[line_end + 2:end]))
        pos = end + len(separator)
    if not parts:
        raise _bad_form("it has no fields")
    refuse_routing_fields(part.name for part in parts)
    return Form(boundary, tuple(parts))


def _boundary(content_type: str) -> bytes:
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary or len(boundary) > 70 or not boundary.isascii() \
            or not boundary.isprintable() or '"' in boundary:
        raise BadRequest("Could not parse multipart form: the Content-Type has no valid boundary",
                         param="Content-Type", code="invalid_multipart")
    return boundary.encode("ascii")


def _part(block: bytes) -> Part:
    if block.startswith(b"\r\n"):
        head, data = b"", block[2:]
    else:
        head_end = block.find(b"\r\n\r\n")
        if head_end < 0:
            raise _bad_form("a part's headers do not end")
        head, data = block[:head_end], block[head_end + 4:]
    headers = _HEADERS.parsebytes(head + b"\r\n\r\n")
    if len(headers.get_all("Content-Disposition", ())) != 1 or len(headers.get_all("Content-Type", ())) > 1 \
            or headers.get_content_disposition() != "form-data":
        raise _bad_form("each part needs one Content-Disposition: form-data header and at most one Content-Type")
    name = headers.get_param("name", header="content-disposition")
    if isinstance(name, tuple):  # RFC 2231 (name*=): the decoded name is the name
        name = email.utils.collapse_rfc2231_value(name)
    if not isinstance(name, str) or not name:
        raise _bad_form("a part has no name")
    content_type = headers.get("Content-Type")
    if content_type is not None and not (str(content_type).isascii() and str(content_type).isprintable()):
        raise _bad_form("a part's Content-Type is not printable ASCII")
    return Part(name, headers.get_filename(), str(content_type) if content_type is not None else None, data)


def _quoted(text: str) -> bytes:
    """A name or filename inside double quotes, escaped as browsers escape them (HTML's form encoding)."""
    return (text.encode("utf-8", "surrogateescape").replace(b'"', b"%22").replace(b"\r", b"%0D")
            .replace(b"\n", b"%0A"))


def _bad_form(why: str) -> BadRequest:
    return BadRequest(f"Could not parse multipart form: {why}", param="body", code="invalid_multipart")
