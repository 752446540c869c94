"""One proxied request from body to last byte: select, walk the attempt chain, relay, account."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from aiohttp import web

from gateway.crypto.keyring import CryptoError
from gateway.errors import (
    BadRequest,
    GatewayError,
    InvalidJSON,
    PayloadTooLarge,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.proxy import dispatch
from gateway.proxy.admission import CLIENT_CLOSED
from gateway.proxy.cache import CachedConfiguration
from gateway.proxy.context import ProxyContext
from gateway.proxy.failover import parse_retry_after, should_fail_over
from gateway.proxy.forward import Target, relayed_headers
from gateway.proxy.keys import plaintext_key
from gateway.proxy.relay import SSERelay, first_event_is_json, usage_of
from gateway.proxy.selection import CONFIGURATION_HEADER, CONVERSATION_HEADER, attempt_chain, select_configuration
from gateway.web.appkeys import PROXY
from gateway.web.auth import caller_of

log = logging.getLogger("gateway.upstream")
# Body fields that would steer routing or credentials (LiteLLM's CVE-2024-6587): the gateway's alone.
ROUTING_FIELDS = frozenset({"api_base", "base_url", "api_key", "extra_headers", "custom_llm_provider",
                            "litellm_params", "mock_response"})
# Endpoints whose streams end with a usage chunk when asked for one, then `data: [DONE]`.
USAGE_CHUNK_PATHS = frozenset({"/chat/completions", "/completions"})
MAX_HEADER_CHARS = 256


class Exchange:
    """The state of one proxied request."""

    __slots__ = (
        "answer",
        "attempts",
        "body",
        "configuration",
        "conversation_id",
        "ctx",
        "drop_usage_chunk",
        "error_class",
        "expect_done",
        "path",
        "raw",
        "request",
        "request_id",
        "started",
        "status",
        "stream",
        "usage",
        "user_id",
    )

    def __init__(self, request: web.Request, path: str) -> None:
        self.request = request
        # The /v1 routes live on the main app, which holds the proxy's resources: a plain lookup, unlike
        # config_dict, which builds a chain of maps on every access; one, for all of them.
        self.ctx: ProxyContext = request.app[PROXY]
        self.path = path
        self.started = time.perf_counter()
        self.request_id = f"{random.getrandbits(64):016x}"  # unique enough to find a line; not a secret
        self.user_id = caller_of(request).require_user()
        self.conversation_id: str | None = None
        self.body: dict[str, Any] | None = None
        self.raw = b""
        self.stream = False
        self.drop_usage_chunk = False
        self.expect_done = False
        self.configuration: CachedConfiguration | None = None
        self.attempts = 0
        self.status = 500
        self.usage: tuple[int, int] | None = None
        self.answer: bytes | None = None
        self.error_class: str | None = None

    def headers(self) -> dict[str, str]:
        """What every answer says about how it was served."""
        headers = {"X-LLM-Gateway-Attempts": str(self.attempts), "X-LLM-Gateway-Request-Id": self.request_id}
        if self.configuration is not None:
            headers["X-LLM-Configuration-Id"] = self.configuration.id_str
        return headers


def routing_header(request: web.Request, name: str) -> str | None:
    """A selection header's value, or None when absent; 400 unless printable UTF-8 of at most 256 characters.
    aiohttp hands undecodable bytes on as surrogates: a value that reached the usage rows, a log line or an error
    message would fail there, not here."""
    value = request.headers.get(name)
    if not value:
        return None
    if len(value) > MAX_HEADER_CHARS or not value.isprintable():
        # The value is not quoted back: it is what could not be written.
        raise BadRequest(f"Header '{name}' must be printable UTF-8 of at most {MAX_HEADER_CHARS} characters",
                         param=name, code="invalid_header")
    return value


async def read_body(ex: Exchange) -> None:
    """Read and check the body: 413 when too large, 400 for bad JSON or a routing field."""
    try:
        ex.raw = await ex.request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("Request body is too large", param="body") from None
    if not ex.request.headers.get("Content-Type", "").startswith("application/json") and \
            not ex.raw.lstrip().startswith(b"{"):
        return  # multipart and other pass-through bodies go upstream untouched
    try:
        body = orjson.loads(ex.raw)
    except orjson.JSONDecodeError:
        raise InvalidJSON("Request body is not valid JSON", param="body") from None
    if not isinstance(body, dict):
        raise InvalidJSON("Request body must be a JSON object", param="body")
    refused = ROUTING_FIELDS.intersection(body)
    if refused:
        field = sorted(refused)[0]
        raise BadRequest(f"Field '{field}' is not allowed: the gateway decides where requests go and with "
                         "which key", param=field, code="routing_field_not_allowed")
    ex.body = body
    ex.stream = body.get("stream") is True
    if ex.stream and ex.path in USAGE_CHUNK_PATHS:
        ex.expect_done = True
        options = body.get("stream_options")
        if options is None or (isinstance(options, dict) and options.get("include_usage") is not True):
            # Ask for the final usage chunk for accounting; the client, who did not ask, will not see it.
            body["stream_options"] = {**(options or {}), "include_usage": True}
            ex.drop_usage_chunk = True


async def proxy(request: web.Request, path: str) -> web.StreamResponse:
    """Serve one /v1 request: choose, attempt in order, relay, account."""
    ex = Exchange(request, path)
    try:
        ex.conversation_id = routing_header(request, CONVERSATION_HEADER)
        await read_body(ex)
        admission = ex.ctx.admission
        if not admission.enter(ex.user_id, stream=ex.stream):
            await admission.wait(request, ex.user_id, stream=ex.stream)
        try:
            return await _serve(ex)
        finally:
            admission.leave(ex.user_id, stream=ex.stream)
    except GatewayError as exc:
        ex.status = exc.status
        ex.error_class = exc.__class__.__name__
        exc.headers.update(ex.headers())
        raise
    except asyncio.CancelledError:
        ex.status = CLIENT_CLOSED
        raise
    finally:
        _account(ex)


async def _serve(ex: Exchange) -> web.StreamResponse:
    ctx = ex.ctx
    cache = ctx.cache
    user_id = ex.user_id
    configurations = cache.cached(user_id) or await cache.configurations(user_id)
    chosen = await select_configuration(
        configurations,
        header=routing_header(ex.request, CONFIGURATION_HEADER),
        model=ex.body.get("model") if ex.body is not None else None,
        conversation_id=ex.conversation_id,
        binding=lambda conversation_id: cache.binding(user_id, conversation_id),
    )
    chain = attempt_chain(configurations, chosen)
    cooldowns, metrics = ctx.cooldowns, ctx.metrics
    last_error: GatewayError | None = None
    for configuration in chain:
        if not cooldowns.admit(configuration.id):
            continue
        if ex.attempts:
            metrics.failovers.inc()
        ex.attempts += 1
        ex.configuration = configuration
        try:
            response, failure = await _attempt(ex, configuration)
        except BaseException:
            cooldowns.released(configuration.id)
            raise
        _record(ex, configuration, response, failure)
        if response is not None:
            return response
        assert failure is not None
        if isinstance(failure, UpstreamError) and not should_fail_over(failure.status):
            raise failure
        last_error = failure
    if last_error is not None:
        raise last_error
    wait = cooldowns.retry_in([c.id for c in chain])
    raise ServiceUnavailable(
        f"Every configuration for this request is cooling down after repeated upstream failures; retry in "
        f"{wait:.0f} s", code="configurations_cooling_down", headers={"Retry-After": str(max(1, round(wait)))})


def _record(ex: Exchange, configuration: CachedConfiguration, response: web.StreamResponse | None,
            failure: GatewayError | None) -> None:
    """An attempt's outcome where it counts: the configuration's cooldown, the metrics and the usage row."""
    cooldowns, metrics = ex.ctx.cooldowns, ex.ctx.metrics
    if failure is None:
        metrics.ok_attempts += 1  # added to the counter in bulk by the usage writer's settle
        cooldowns.succeeded(configuration.id)
        return
    if response is not None:  # the stream broke after its first byte: no failover now
        ex.error_class = failure.__class__.__name__
        if cooldowns.failed(configuration.id):
            metrics.cooldowns.inc()
        return
    if not isinstance(failure, UpstreamError):  # the stored key could not be decrypted
        metrics.attempt["key_error"].inc()
        return
    # The cause by class and status only: upstream texts and aiohttp's messages may quote URLs or keys.
    log.warning("upstream attempt failed: request_id=%s configuration_id=%s status=%s code=%s cause=%s",
                ex.request_id, configuration.id, failure.status, failure.code,
                failure.__cause__.__class__.__name__ if failure.__cause__ is not None else f"HTTP {failure.status}")
    if not should_fail_over(failure.status):
        cooldowns.succeeded(configuration.id)  # it answered: the request was wrong, not the key
        metrics.attempt["client_error"].inc()
        return
    metrics.attempt["failed"].inc()
    if cooldowns.failed(configuration.id, parse_retry_after(failure.headers.get("Retry-After"))):
        metrics.cooldowns.inc()


async def _attempt(ex: Exchange, configuration: CachedConfiguration
                   ) -> tuple[web.StreamResponse | None, GatewayError | None]:
    """One upstream attempt's outcome: the response (with the failure that cut its stream short, if any), or the
    failure when nothing has reached the client and another configuration may still answer."""
    try:
        api_key = plaintext_key(ex.ctx.keyring, configuration)
    except CryptoError:
        return None, GatewayError(f"The stored key of LLM configuration '{configuration.name}' cannot be "
                                  "decrypted with this gateway's encryption keys", code="key_unavailable")
    try:
        target = Target.of(configuration, api_key)
        del api_key
        # The client's Content-Type as sent: a multipart body is unreadable without its boundary parameter.
        answer = await dispatch.call(
            ex.ctx.http, ex.ctx.translator, target, path=ex.path, body=ex.body, raw=ex.raw,
            stream=ex.stream, max_body_bytes=ex.ctx.settings.max_upstream_body_bytes,
            client_headers=ex.request.headers,
            content_type=None if ex.body is not None else ex.request.headers.get("Content-Type"), user=ex.user_id)
        try:
            headers = relayed_headers(answer.headers, target.api_key)
            if answer.chunks is not None:
                return await _relay(ex, answer.status, headers, answer.chunks)
            if answer.content_type == "application/json":
                # Parsed once: to refuse a garbled answer, and for its usage (the flusher need not parse it again).
                try:
                    ex.usage = usage_of(orjson.loads(answer.body))
                except orjson.JSONDecodeError:
                    raise UpstreamError(f"The upstream answered HTTP {answer.status} with a body that is not valid "
                                        "JSON", code="upstream_invalid_response") from None
            else:
                ex.answer = answer.body  # the flusher looks for usage in it
            return _response(ex, answer.status, headers, answer.body), None
        finally:
            await answer.close()
    except UpstreamError as exc:
        return None, exc


def _response(ex: Exchange, status: int, headers: dict[str, str], body: bytes | None = None) -> web.StreamResponse:
    """The client's response, whole (body) or to stream; the one place the gateway's own headers are stamped."""
    ex.status = status
    headers.update(ex.headers())
    if body is None:
        return web.StreamResponse(status=status, headers=headers)
    return web.Response(body=body, status=status, headers=headers)


async def _relay(ex: Exchange, status: int, headers: dict[str, str], chunks: AsyncGenerator[bytes, None]
                 ) -> tuple[web.StreamResponse, GatewayError | None]:
    """Relay a stream event by event: the response and the failure that cut it short, if any. Before the first
    byte an upstream error is raised (and may fail over)."""
    settings = ex.ctx.settings
    relay = SSERelay(drop_usage_chunk=ex.drop_usage_chunk, max_event_bytes=settings.max_event_bytes)
    limit_s = settings.stream_max_duration_s
    deadline = asyncio.get_running_loop().time() + limit_s if limit_s else None
    first = b""
    try:
        async with asyncio.timeout_at(deadline):
            while not first:
                chunk = await anext(chunks, None)
                if chunk is None:
                    raise UpstreamError("The upstream ended the stream before sending anything",
                                        code="upstream_empty_stream")
                first = relay.feed(chunk)
    except TimeoutError:
        raise _too_long(limit_s) from None
    if not first_event_is_json(first):
        # Nothing has reached the client yet: a garbled stream is an upstream failure (and may fail over).
        raise UpstreamError("The upstream's stream is not valid server-sent JSON events",
                            code="upstream_invalid_response")
    response = _response(ex, status, headers)
    failure: GatewayError | None = None
    try:
        await response.prepare(ex.request)
        # Relay as the events come: buffering would delay the first token.
        await response.write(first)
        try:
            async with asyncio.timeout_at(deadline):
                failure = await _pump(response, relay, chunks)
        except TimeoutError:
            failure = _too_long(limit_s)
        if failure is None and ex.expect_done and not relay.saw_done:
            failure = UpstreamError("The upstream stream ended before its end marker", code="upstream_stream_cut")
        if failure is not None:
            await response.write(b"data: " + orjson.dumps(failure.envelope()) + b"\n\n")
        await response.write_eof()
    except ConnectionError:
        ex.status = CLIENT_CLOSED  # the client left: leaving this block closes the upstream connection too
    ex.usage = relay.usage
    return response, failure


def _too_long(limit_s: float) -> UpstreamTimeout:
    return UpstreamTimeout(f"The stream ran longer than {limit_s:g} s, the gateway's limit", code="stream_too_long")


async def _pump(response: web.StreamResponse, relay: SSERelay, chunks: AsyncGenerator[bytes, None]
                ) -> GatewayError | None:
    """Relay the rest of the stream; the upstream's failure (a cut, a silence, an oversized event), if any.

    The end marker completes the client's answer: it ends here, not at the upstream's HTTP end, which a proxy
    upstream (LiteLLM) sends a moment later, after a client (the openai SDK) already left on [DONE]."""
    while not relay.saw_done:
        try:
            chunk = await anext(chunks, None)
            if chunk is None:
                return None
            data = relay.feed(chunk)
        except GatewayError as exc:
            return exc
        if data:
            await response.write(data)
    return None


def _account(ex: Exchange) -> None:
    """One tuple to the usage writer: metrics, the usage row and the access line are its batch work."""
    ex.ctx.usage.append((
        ex.request_id, ex.user_id, ex.configuration, ex.conversation_id, ex.path, ex.status, ex.attempts, ex.stream,
        time.perf_counter() - ex.started, time.time(), ex.usage,
        ex.answer if ex.usage is None and ex.status < 300 else None, ex.error_class,
    ))
