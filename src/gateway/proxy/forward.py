"""One upstream call, no failover: where it goes, which headers it carries, and the one boundary that turns
aiohttp's errors and upstream error answers into ours (with the key scrubbed out of every message)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from gateway.configurations.providers import WIRE_OPENAI
from gateway.crypto.masking import scrub
from gateway.errors import BadRequest, UpstreamError, UpstreamTimeout, parse_error_body
from gateway.ssrf import UnsafeURLError

if TYPE_CHECKING:  # not at run time: the translation worker imports this module, and the cache brings SQLAlchemy
    from gateway.proxy.cache import CachedConfiguration

MAX_ERROR_BODY = 64 * 1024
LARGE_BODY = 1024 * 1024
MAX_ERROR_MESSAGE = 2000
DEFAULT_MAX_UPSTREAM_BODY = 32 * 1024 * 1024  # the setting MAX_UPSTREAM_BODY_BYTES's default
# What a client may tell the upstream; everything else (its Authorization, cookies, X-LLM-*) stays here.
FORWARDED_REQUEST_HEADERS = ("Accept", "OpenAI-Beta")
# Upstream answer headers worth passing back; hop-by-hop, length and encoding are the gateway's own business.
RELAYED_RESPONSE_HEADERS = frozenset({"content-type", "x-request-id", "request-id", "openai-processing-ms",
                                      "openai-version", "retry-after", "x-should-retry"})
RELAYED_RESPONSE_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "ratelimit-", "retry-after-ms")


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a setattr call per field, per request
class Target:
    """Where one attempt goes; holds the key decrypted for this request only (never in its repr)."""

    provider: str
    wire: str
    litellm_provider: str
    base_url: str
    model: str
    api_key: str = field(repr=False)
    name: str = ""

    @classmethod
    def of(cls, configuration: CachedConfiguration, api_key: str) -> Target:
        """The target of a cached configuration; its base_url's verdict was reached when it was cached."""
        if not configuration.base_url:
            raise BadRequest(f"LLM configuration '{configuration.name}' has no base_url and its provider "
                             f"'{configuration.provider}' has no default", code="configuration_incomplete")
        if configuration.refusal is not None:
            raise UpstreamError(f"The upstream address is refused by the gateway's policy: {configuration.refusal}",
                                code="upstream_address_refused")
        return cls(configuration.provider, configuration.wire, configuration.litellm_provider,
                   configuration.base_url, configuration.model, api_key, configuration.name)

    @property
    def is_openai_compatible(self) -> bool:
        """True when requests are forwarded as bytes."""
        return self.wire == WIRE_OPENAI

    def headers(self, client_headers: Mapping[str, str] | None = None, content_type: str | None = None
                ) -> dict[str, str]:
        """Request headers: the body's type, the configuration's key in the provider's header, a few client ones."""
        headers = {"Content-Type": content_type or "application/json"}
        if client_headers is not None:
            for name in FORWARDED_REQUEST_HEADERS:
                value = client_headers.get(name)
                if value is not None:
                    headers[name] = value
        if self.api_key:
            if self.provider == "azure":
                headers["api-key"] = self.api_key
            else:
                headers["Authorization"] = "Bearer " + self.api_key
        return headers


@dataclass(frozen=True, slots=True)
class UpstreamResult:
    """A complete upstream answer."""

    status: int
    headers: dict[str, str]
    body: bytes


@lru_cache(maxsize=256)  # a few paths of a few upstreams: the cap only bounds what clients' pass-through paths add
def upstream_url(base_url: str, path: str) -> URL:
    """The URL of a path under an upstream's base URL, parsed once: aiohttp parses a string URL on every call (and
    yarl's URLs are immutable, so one object serves every request)."""
    return URL(base_url + path)


@lru_cache(maxsize=1024)  # a pure function of a header name; upstreams send the same few names every time
def is_relayed(name: str) -> bool:
    """Whether a client gets to see an upstream answer header of this name."""
    lower = name.lower()
    return lower in RELAYED_RESPONSE_HEADERS or lower.startswith(RELAYED_RESPONSE_PREFIXES)


def relayed_headers(upstream: Mapping[str, str], api_key: str = "") -> dict[str, str]:
    """The upstream answer headers a client gets to see, with the key scrubbed out of their values."""
    return {name: scrub(value, api_key) if api_key and api_key in value else value
            for name, value in upstream.items() if is_relayed(name)}


def error_from_answer(status: int, raw: bytes, *, api_key: str, headers: Mapping[str, str]) -> UpstreamError:
    """The upstream's error answer in our envelope, with its status; the key never survives."""
    fields = parse_error_body(raw)
    message, type_, code, param = fields.message, fields.type, fields.code, fields.param
    if not message:
        message = f"The upstream answered HTTP {status}"
    if 300 <= status < 400:
        message, status = f"The upstream answered with a redirect (HTTP {status}); redirects are not followed", 502
    # Scrub, then cut: cut first, a key straddling the limit would survive as its first characters.
    error = UpstreamError(scrub(message, api_key)[:MAX_ERROR_MESSAGE], status=status,
                          code=scrub(str(code), api_key)[:100] if code is not None else "upstream_error",
                          param=scrub(str(param), api_key)[:100] if param is not None else None)
    if isinstance(type_, str) and type_:
        error.type = scrub(type_, api_key)[:100]
    # Retry-After and rate-limit headers tell the client (and the cooldown) when to come back.
    for name, value in relayed_headers(headers, api_key).items():
        lower = name.lower()
        if lower == "retry-after":
            error.headers["Retry-After"] = value  # the spelling the cooldown and clients look up
        elif lower != "content-type":
            error.headers[name] = value
    return error


class upstream_errors:  # noqa: N801 - used like contextlib's managers
    """Translate transport errors of a call to `target` into UpstreamError (502) / UpstreamTimeout (504).

    A class rather than @contextmanager: it wraps every upstream call, and a generator costs more.
    """

    __slots__ = ("target",)

    def __init__(self, target: Target) -> None:
        self.target = target

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and isinstance(exc, (TimeoutError, UnsafeURLError, aiohttp.ClientError)):
            raise transport_error(exc, self.target) from exc


def transport_error(exc: BaseException, target: Target) -> UpstreamError:
    """Our error for an aiohttp or SSRF failure; the class name only, since aiohttp's messages quote URLs,
    which may carry credentials in their userinfo."""
    name = target.name or target.provider
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"The upstream of '{name}' did not answer in time", code="upstream_timeout")
    if isinstance(exc, UnsafeURLError):
        return UpstreamError(f"The upstream address is refused by the gateway's policy: {exc}",
                             code="upstream_address_refused")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError(f"Could not reach the upstream of '{name}' ({exc.__class__.__name__})",
                             code="upstream_unreachable")
    return UpstreamError(f"The connection to the upstream of '{name}' failed ({exc.__class__.__name__})",
                         code="upstream_connection_error")


def sendable(body: bytes) -> bytes | io.BytesIO:
    """A request body as aiohttp should get it: a large one as a file-like payload (aiohttp would otherwise
    warn about blocking the loop)."""
    return body if len(body) < LARGE_BODY else io.BytesIO(body)


async def post_upstream(
    http: aiohttp.ClientSession, target: Target, *, path: str, body: bytes,
    client_headers: Mapping[str, str] | None = None, content_type: str | None = None,
    timeout_s: float | None = None,
) -> aiohttp.ClientResponse:
    """POST body to the target's path; returns once the answer's headers are in. The caller releases it
    (release() drops the connection when the answer was not read to its end: a client gone, an error)."""
    data = sendable(body)
    headers = target.headers(client_headers, content_type)
    with upstream_errors(target):
        if timeout_s is None:  # the session's read timeouts (an explicit timeout=None would disable them)
            return await http.post(upstream_url(target.base_url, path), data=data, headers=headers,
                                   allow_redirects=False)
        return await http.post(upstream_url(target.base_url, path), data=data, headers=headers, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=timeout_s))


async def read_answer(response: aiohttp.ClientResponse, target: Target, limit: int) -> bytes:
    """A whole answer body of at most `limit` bytes (decoded), else 502 upstream_too_large: memory follows the
    limit, not what the upstream sends or claims in its Content-Length."""
    length = response.content_length
    if length is not None and length > limit:
        raise _too_large(target, limit)
    if length is not None and "Content-Encoding" not in response.headers:
        # The parser stops at Content-Length, and nothing inflates it: reading it whole is bounded, and cheaper
        # than chunk by chunk. A compressed answer is counted as it inflates, below.
        with upstream_errors(target):
            return await response.read()
    chunks: list[bytes] = []
    size = 0
    with upstream_errors(target):
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                # The error's traceback keeps this frame alive until a garbage collection: not its chunks.
                chunks.clear()
                raise _too_large(target, limit)
            chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def invalid_stream() -> UpstreamError:
    """A stream that is not what it claims: the provider's failure, before anything reached the client."""
    return UpstreamError("The upstream's stream is not valid server-sent JSON events", code="upstream_invalid_response")


def stream_cut() -> UpstreamError:
    """A stream that stopped before its end marker: the provider's failure, the client's answer incomplete."""
    return UpstreamError("The upstream stream ended before its end marker", code="upstream_stream_cut")


def _too_large(target: Target, limit: int) -> UpstreamError:
    return UpstreamError(f"The upstream of '{target.name or target.provider}' answered with more than {limit} bytes",
                         code="upstream_too_large")


async def read_error(response: aiohttp.ClientResponse, target: Target) -> UpstreamError:
    """Read an error answer (bounded) and translate it."""
    with upstream_errors(target):
        raw = await response.content.read(MAX_ERROR_BODY)
    return error_from_answer(response.status, raw, api_key=target.api_key, headers=response.headers)
