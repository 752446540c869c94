"""Providers without OpenAI's wire format (Anthropic's Messages API, Gemini...) through litellm's translation,
both ways, streams included. litellm is imported on the first such request, in a thread: it takes seconds, and
OpenAI-compatible traffic never needs it.

Its HTTP goes through the gateway's own guarded ClientSession on every attempt: litellm's handler is given an
httpx transport of ours (GuardedTransport), which it reuses for the fresh client it makes to retry a failed
connect. Handing it the session alone is not enough: that retry would build a client of litellm's own, with the
system's resolver and the environment's proxies, and a name that resolves first to a public address and then
to a refused one would reach the refused one with the key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from types import ModuleType
from typing import Any

import aiohttp
import httpx
import orjson
from yarl import URL

from gateway.configurations.providers import _litellm as import_litellm
from gateway.errors import BadRequest, UpstreamError
from gateway.proxy.forward import Target, UpstreamResult, error_from_answer, transport_error
from gateway.ssrf import UnsafeURLError, UrlPolicy

# OpenAI chat parameters a client may send; anything else would reach litellm's own options (headers,
# fallbacks, callbacks...), which are the gateway's business, not the client's.
CHAT_PARAMS = frozenset({
    "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "presence_penalty",
    "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user", "tools", "tool_choice",
    "parallel_tool_calls", "response_format", "seed", "stream", "stream_options", "reasoning_effort", "metadata",
    "service_tier", "functions", "function_call", "thinking", "top_k", "model",
})
JSON_HEADERS = {"Content-Type": "application/json"}
# What the OpenAI path's boundary (forward.upstream_errors) translates; litellm wraps them in its own classes.
TRANSPORT_FAILURES = (TimeoutError, UnsafeURLError, aiohttp.ClientError)


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
        try:
            self.urls.guard_url(str(request.url))  # IP literals never reach the resolver
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
        stream = BoundedStream(AiohttpResponseStream(response), self.max_body_bytes)
        return httpx.Response(status_code=response.status, headers=response.headers, stream=stream,
                              request=request)

    async def aclose(self) -> None:
        """Nothing to close: the session belongs to the app."""


class BoundedStream(httpx.AsyncByteStream):
    """An answer litellm reads, cut off past `limit` bytes (streams too): memory follows MAX_UPSTREAM_BODY_BYTES,
    not what the upstream sends."""

    def __init__(self, inner: httpx.AsyncByteStream, limit: int) -> None:
        self.inner = inner
        self.limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self.inner:
            size += len(chunk)
            if size > self.limit:
                raise UpstreamError(f"The upstream answered with more than {self.limit} bytes",
                                    code="upstream_too_large")
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


class Translator:
    """litellm and one HTTP handler over the gateway's session, both made on first use."""

    def __init__(self, *, timeout_s: float, urls: UrlPolicy, max_body_bytes: int = 32 * 1024 * 1024) -> None:
        self.timeout_s = timeout_s
        self.urls = urls
        self.max_body_bytes = max_body_bytes
        self._module: ModuleType | None = None
        self._handler: Any = None
        self._lock = asyncio.Lock()

    async def ready(self, http: aiohttp.ClientSession) -> tuple[ModuleType, Any]:
        """litellm and its handler; the first call imports litellm off the event loop."""
        if self._module is None:
            async with self._lock:
                if self._module is None:
                    module = await asyncio.to_thread(import_litellm)
                    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

                    # Our transport, not only our session: litellm's connect retry reuses a transport it was
                    # given, but builds a client of its own around a session it was given.
                    self._handler = AsyncHTTPHandler(
                        timeout=self.timeout_s, follow_redirects=False,
                        transport=GuardedTransport(http, urls=self.urls, max_body_bytes=self.max_body_bytes))
                    self._module = module
        return self._module, self._handler


def _params(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - CHAT_PARAMS)
    if unknown:
        raise BadRequest(f"Field '{unknown[0]}' is not supported for this provider", param=unknown[0],
                         code="unsupported_parameter")
    return {k: v for k, v in body.items() if k not in ("model", "stream", "stream_options")}


def _chain(exc: BaseException) -> list[BaseException]:
    """exc and the exceptions it was raised from or during, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _answer_of(exc: BaseException, chain: list[BaseException]) -> tuple[int, bytes, Mapping[str, str]] | None:
    """The upstream's error answer behind litellm's exception (status, body, headers), when there was one."""
    import httpx
    import openai

    for link in chain:
        if isinstance(link, TRANSPORT_FAILURES):
            return None  # the request failed before an answer (its own mapping)
        if isinstance(link, httpx.HTTPStatusError):
            response = link.response
            try:
                body = response.content
            except httpx.ResponseNotRead:
                body = b""
            return response.status_code, body, response.headers
    status = getattr(exc, "status_code", None)
    if isinstance(exc, openai.APIConnectionError) or not isinstance(status, int) or status < 400:
        return None  # timeouts and connection errors carry a made-up status (408, 500)
    # No HTTP answer kept: the provider's envelope, if any, is inside litellm's "XError: ...Exception - {json}".
    text = str(exc)
    body = text[text.find("{"):text.rfind("}") + 1].encode() if "{" in text else b""
    headers = getattr(exc, "litellm_response_headers", None) or {}
    return status, body, headers


def translate_error(exc: BaseException, target: Target) -> tuple[UpstreamError, BaseException | None]:
    """litellm's exception as the OpenAI path's error for the same failure (transport errors included), and the
    transport exception to chain it to (None: litellm's own chain quotes request details)."""
    import openai

    chain = _chain(exc)
    for link in chain:
        if isinstance(link, UpstreamError):  # ours, raised inside litellm's read (an answer too large)
            return link, None
    answer = _answer_of(exc, chain)
    if answer is not None:
        status, body, headers = answer
        return error_from_answer(status, body, api_key=target.api_key, headers=headers), None
    # The outermost transport failure litellm wrapped is what the OpenAI path would have caught.
    for link in chain:
        if isinstance(link, TRANSPORT_FAILURES):
            return transport_error(link, target), link
    if isinstance(exc, openai.APITimeoutError):
        return transport_error(TimeoutError(), target), None
    name = target.name or target.provider
    return UpstreamError(f"Could not reach the upstream of '{name}' ({exc.__class__.__name__})",
                         code="upstream_unreachable"), None


def _failures() -> tuple[type[BaseException], ...]:
    import httpx
    import openai

    return (openai.OpenAIError, httpx.HTTPError, aiohttp.ClientError, TimeoutError)


async def _call(translator: Translator, http: aiohttp.ClientSession, target: Target, body: dict[str, Any],
                **extra: Any) -> Any:
    params = _params(body)
    litellm, handler = await translator.ready(http)
    check_guarded(handler, target.base_url)
    try:
        return await litellm.acompletion(
            model=f"{target.litellm_provider}/{target.model}", api_base=target.base_url, api_key=target.api_key,
            client=handler, timeout=translator.timeout_s, num_retries=0, drop_params=True, **params, **extra)
    except _failures() as exc:
        error, cause = translate_error(exc, target)
        raise error from cause


async def complete(translator: Translator, http: aiohttp.ClientSession, target: Target, body: dict[str, Any]
                   ) -> UpstreamResult:
    """A non-streamed chat completion, answered in OpenAI's shape."""
    response = await _call(translator, http, target, body)
    return UpstreamResult(200, dict(JSON_HEADERS), orjson.dumps(response.model_dump(exclude_none=True)))


def _frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def stream(translator: Translator, http: aiohttp.ClientSession, target: Target, body: dict[str, Any]
                 ) -> AsyncGenerator[bytes, None]:
    """A streamed chat completion as OpenAI's SSE frames, with the usage in a chunk of its own at the end."""
    wrapper = await _call(translator, http, target, body, stream=True, stream_options={"include_usage": True})
    try:
        async for chunk in wrapper:
            data = chunk.model_dump(exclude_none=True)
            usage = data.pop("usage", None)
            choices = data.get("choices") or []
            if choices and not (usage and all(not c.get("delta") and not c.get("finish_reason") for c in choices)):
                yield _frame(data)
            if usage:
                yield _frame({"id": data.get("id"), "object": "chat.completion.chunk",
                              "created": data.get("created", int(time.time())), "model": data.get("model"),
                              "choices": [], "usage": usage})
    except _failures() as exc:
        error, cause = translate_error(exc, target)
        raise error from cause
    yield b"data: [DONE]\n\n"
