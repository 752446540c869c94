"""litellm's HTTP through the gateway's guarded ClientSession, on every attempt: litellm's handler is given an
httpx transport of ours (GuardedTransport), which it reuses for the fresh client it makes to retry a failed
connect. Handing it the session alone is not enough: that retry would build a client of litellm's own, with the
system's resolver and the environment's proxies, and a name that resolves first to a public address and then
to a refused one would reach the refused one with the key.

Imported with litellm (translation.Translator.ready), never at start-up: httpx costs start-up time and memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from yarl import URL

from gateway.errors import UpstreamError
from gateway.ssrf import UnsafeURLError, UrlPolicy

EDGE_BYTES = 512  # kept of an answer's first and last bytes: enough for a stream's opening and closing events


@dataclass(slots=True)
class Exchanges:
    """What one translated call met upstream: whether a request went out, the status of the last answer, and
    that answer's first and last bytes. litellm reports a request it refused to build, and an answer it could
    not read, with made-up statuses of its own (a 500 connection error, a 400 or 422), skips stream events it
    cannot parse and ends a cut stream as if it had finished: only this tells them from what the provider did."""

    sent: bool = False
    status: int | None = None
    head: bytes = b""
    tail: bytes = b""

    def received(self, chunk: bytes) -> None:
        """Keep the answer's edges."""
        if len(self.head) < EDGE_BYTES:
            self.head += chunk[:EDGE_BYTES - len(self.head)]
        self.tail = chunk[-EDGE_BYTES:] if len(chunk) >= EDGE_BYTES else (self.tail + chunk)[-EDGE_BYTES:]


# Set by the worker around each call; litellm stands between the call and this transport, so nothing else
# carries it through (a context variable: each call runs in a task, and tasks litellm starts inherit it).
EXCHANGES: ContextVar[Exchanges | None] = ContextVar("exchanges", default=None)


class GuardedTransport(httpx.AsyncBaseTransport):
    """litellm's requests sent through the gateway's session: the URL policy judges every URL, its GuardedResolver
    every connect; no environment proxy, no redirect; litellm closing a client it made around this transport
    closes nothing."""

    def __init__(self, http: aiohttp.ClientSession, *, urls: UrlPolicy, max_body_bytes: int) -> None:
        self.http = http
        self.urls = urls
        self.max_body_bytes = max_body_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request; aiohttp's errors become httpx's, as litellm expects."""
        from litellm.llms.custom_httpx.aiohttp_transport import AiohttpResponseStream, map_aiohttp_exceptions

        timeouts = request.extensions.get("timeout") or {}
        body = await request.aread()
        exchanges = EXCHANGES.get()
        try:
            self.urls.guard_url(str(request.url))  # IP literals never reach the resolver
            if exchanges is not None:
                exchanges.sent = True
            with map_aiohttp_exceptions():
                response = await self.http.request(
                    request.method, URL(str(request.url), encoded=True), headers=request.headers,
                    data=body or None, allow_redirects=False, auto_decompress=False, proxy=None,
                    timeout=aiohttp.ClientTimeout(sock_connect=timeouts.get("connect"),
                                                  sock_read=timeouts.get("read")),
                )
        except UnsafeURLError as exc:
            # A connect failure to litellm (a 502 to the client), not an unexpected error (its 500).
            raise httpx.ConnectError(str(exc), request=request) from exc
        if exchanges is not None:
            exchanges.status, exchanges.head, exchanges.tail = response.status, b"", b""
        stream = BoundedStream(AiohttpResponseStream(response), self.max_body_bytes, exchanges)
        return httpx.Response(status_code=response.status, headers=response.headers, stream=stream,
                              request=request)

    async def aclose(self) -> None:
        """Nothing to close: the session belongs to the app."""


class BoundedStream(httpx.AsyncByteStream):
    """An answer litellm reads, cut off past `limit` bytes (streams too): memory follows MAX_UPSTREAM_BODY_BYTES,
    not what the upstream sends."""

    def __init__(self, inner: httpx.AsyncByteStream, limit: int, exchanges: Exchanges | None = None) -> None:
        self.inner = inner
        self.limit = limit
        self.exchanges = exchanges

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self.inner:
            size += len(chunk)
            if size > self.limit:
                raise UpstreamError(f"The upstream answered with more than {self.limit} bytes",
                                    code="upstream_too_large")
            if self.exchanges is not None:
                self.exchanges.received(chunk)
            yield chunk

    async def aclose(self) -> None:
        """Release the upstream connection."""
        await self.inner.aclose()


def check_guarded(handler: Any, url: str) -> None:
    """Refuse to call out when litellm would send this URL through a client that is not ours."""
    client = handler.client
    if client.trust_env or not isinstance(client._transport_for_url(httpx.URL(url)), GuardedTransport):
        raise UpstreamError("Translated providers are unavailable: litellm would use an HTTP client outside the "
                            "gateway's address policy", code="upstream_transport_unguarded")
