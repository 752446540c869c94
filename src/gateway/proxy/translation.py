"""Providers without OpenAI's wire format (Anthropic's Messages API, Gemini...) through litellm's translation,
both ways, streams included. litellm is imported on the first such request, in a thread: it takes seconds, and
OpenAI-compatible traffic never needs it. Its HTTP goes through the gateway's own guarded session
(guarded_http.py, imported with litellm: httpx is not on the start-up path either)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping
from types import ModuleType
from typing import Any

import aiohttp
import orjson

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

                    from gateway.proxy.guarded_http import GuardedTransport

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
    from gateway.proxy.guarded_http import check_guarded  # loaded with litellm, by ready()

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
