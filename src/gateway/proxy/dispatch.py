"""The one dispatch on wire format: an upstream call forwarded as bytes (forward) or translated by litellm in
the translation worker (translation), answered the same way. The proxy's attempts and configuration tests both
call through here, so forward and translation never need each other's callers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Hashable, Mapping
from typing import Any

import aiohttp
import orjson

from gateway.configurations.providers import WIRE_OPENAI
from gateway.errors import BadRequest
from gateway.proxy import translation
from gateway.proxy.forward import (
    DEFAULT_MAX_UPSTREAM_BODY,
    Target,
    UpstreamResult,
    post_upstream,
    read_answer,
    read_error,
    upstream_errors,
)
from gateway.proxy.translation import Translator
from gateway.ssrf import UrlPolicy

TRANSLATED_PATH = "/chat/completions"
STREAM_HEADERS = {"Content-Type": "text/event-stream"}


class Answer:
    """An upstream's 2xx answer: whole (`body`) or streamed (`chunks`). Its headers are the upstream's, unfiltered;
    close() gives the connection back (the caller calls it once, whatever happened)."""

    __slots__ = ("_upstream", "body", "chunks", "content_type", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], *, body: bytes = b"",
                 chunks: AsyncGenerator[bytes, None] | None = None, content_type: str = "application/json",
                 upstream: aiohttp.ClientResponse | None = None) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.chunks = chunks
        self.content_type = content_type
        self._upstream = upstream

    async def close(self) -> None:
        """Stop the stream and release the upstream connection (dropped when not read to its end)."""
        try:
            if self.chunks is not None:
                await self.chunks.aclose()
        finally:
            if self._upstream is not None:
                self._upstream.release()


async def call(
    http: aiohttp.ClientSession, translator: Translator, target: Target, *, path: str, body: dict[str, Any] | None,
    raw: bytes, stream: bool, max_body_bytes: int, client_headers: Mapping[str, str] | None = None,
    content_type: str | None = None, timeout_s: float | None = None, user: Hashable | None = None,
) -> Answer:
    """Send one request to the target in its wire format; UpstreamError for an error answer or a failed call.

    `body` is the parsed JSON body (its model becomes the target's), None for a pass-through body sent as `raw`
    with the client's `content_type`. Targets without OpenAI's wire format serve /chat/completions only, within
    `user`'s share of the translation workers."""
    if target.wire != WIRE_OPENAI:  # not is_openai_compatible: a property is a call, on every request
        if path != TRANSLATED_PATH or body is None:
            raise BadRequest(f"Provider '{target.provider}' serves only /v1/chat/completions through the gateway",
                             code="endpoint_not_supported")
        if stream:
            return Answer(200, STREAM_HEADERS, chunks=translation.stream(translator, target, body, user=user))
        result = await translation.complete(translator, target, body, user=user)
        return Answer(result.status, result.headers, body=result.body)
    if body is not None:
        body["model"] = target.model
        payload = orjson.dumps(body)
    else:
        payload = raw
    upstream = await post_upstream(http, target, path=path, body=payload, client_headers=client_headers,
                                   content_type=content_type, timeout_s=timeout_s)
    try:
        if upstream.status >= 300:
            raise await read_error(upstream, target)
        if stream:  # released by the answer's close()
            return Answer(upstream.status, upstream.headers, chunks=_chunks(upstream, target), upstream=upstream)
        raw_answer = await read_answer(upstream, target, max_body_bytes)
    except BaseException:
        upstream.release()
        raise
    upstream.release()
    return Answer(upstream.status, upstream.headers, body=raw_answer, content_type=upstream.content_type)


async def _chunks(upstream: aiohttp.ClientResponse, target: Target) -> AsyncGenerator[bytes, None]:
    with upstream_errors(target):
        async for chunk in upstream.content.iter_any():
            yield chunk


async def send_once(
    http: aiohttp.ClientSession, target: Target, *, path: str, body: dict[str, Any], timeout_s: float,
    urls: UrlPolicy, translator: Translator | None = None, max_body_bytes: int = DEFAULT_MAX_UPSTREAM_BODY,
) -> UpstreamResult:
    """Send one non-streamed request to the target, no failover; the model becomes the target's.

    Returns 2xx answers with all their headers; raises UpstreamError (with the upstream's status, its
    Retry-After and rate-limit headers) for error answers and connection errors, UpstreamTimeout when
    `timeout_s` passes. Targets without OpenAI's wire format go through litellm (`translator`: the app's
    TRANSLATOR), /chat/completions only. The base_url is asked of `urls` (the app's URL_POLICY) first: the
    proxy's own targets come from the cache, which asked it already, but this one may be unsaved.
    """
    with upstream_errors(target):
        urls.guard_url(target.base_url)
    own = translator is None  # a translator of its own starts its own worker: stopped before returning
    translator = translator or Translator(timeout_s=timeout_s, urls=urls)
    try:
        with upstream_errors(target):
            answer = await asyncio.wait_for(
                call(http, translator, target, path=path, body={**body}, raw=b"", stream=False,
                     max_body_bytes=max_body_bytes, timeout_s=timeout_s), timeout_s)
    finally:
        if own:
            await translator.close()
    return UpstreamResult(answer.status, dict(answer.headers), answer.body)
