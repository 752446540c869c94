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
    RequestTimeout,
    ServiceUnavailable,
    TranslationUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.logs import field_value
from gateway.proxy import body, dispatch, json_bodies
from gateway.proxy.admission import CLIENT_CLOSED
from gateway.proxy.cache import CachedConfiguration
from gateway.proxy.context import ProxyContext
from gateway.proxy.failover import Blame, blame, parse_retry_after
from gateway.proxy.forward import Target, invalid_stream, relayed_headers, stream_cut
from gateway.proxy.keys import plaintext_key
from gateway.proxy.relay import SSERelay, first_event_is_json, usage_of
from gateway.proxy.selection import CONFIGURATION_HEADER, CONVERSATION_HEADER, attempt_chain, select_configuration
from gateway.web.appkeys import PROXY
from gateway.web.auth import caller_of
from gateway.web.responses import error_response

log = logging.getLogger("gateway.upstream")
# Endpoints whose streams end with a usage chunk when asked for one, then `data: [DONE]`.
USAGE_CHUNK_PATHS = frozenset({"/chat/completions", "/completions"})
MAX_HEADER_CHARS = 256


class Exchange:
    """The state of one proxied request."""

    __slots__ = (
        "answer",
        "attempts",
        "body",
        "body_bytes",
        "configuration",
        "conversation_id",
        "ctx",
        "drop_usage_chunk",
        "error_class",
        "expect_done",
        "form",
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
        self.form: body.Form | None = None
        self.raw = b""
        self.body_bytes = 0  # taken from the user's share of body bytes in flight
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
    """Read and check the body by the one rule of gateway.proxy.body: 415 for a type it cannot check, 413 when
    too large, 408 when too slow, 429 past the user's body bytes in flight, 400 for a bad body or a routing field."""
    request, settings = ex.request, ex.ctx.settings
    kind = body.media_type(request, ex.path)
    raw = await body.read(request, max_bytes=settings.max_body_bytes, timeout_s=settings.body_read_timeout_s,
                          take=lambda size: _take_body_bytes(ex, size))
    if kind is body.FORM:
        ex.form = body.form(request.headers["Content-Type"], raw)
        return
    if not raw and ex.path not in body.JSON_OBJECT_PATHS:
        return  # nothing to check (POST /v1/batches/{id}/cancel and the like)
    # Small bodies parsed here, without a coroutine: the common case; big ones in the parser's child process.
    ex.body = parsed = body.json_object(raw) if len(raw) < json_bodies.INLINE_BYTES else \
        await ex.ctx.json_bodies.parse(raw)
    ex.stream = parsed.get("stream") is True
    if ex.stream and ex.path in USAGE_CHUNK_PATHS:
        ex.expect_done = True
        options = parsed.get("stream_options")
        if options is None or (isinstance(options, dict) and options.get("include_usage") is not True):
            # Ask for the final usage chunk for accounting; the client, who did not ask, will not see it.
            parsed["stream_options"] = {**(options or {}), "include_usage": True}
            ex.drop_usage_chunk = True


def _take_body_bytes(ex: Exchange, size: int) -> None:
    ex.ctx.admission.take_body_bytes(ex.user_id, size)
    ex.body_bytes += size


async def proxy(request: web.Request, path: str) -> web.StreamResponse:
    """Serve one /v1 request: choose, attempt in order, relay, account."""
    ex = Exchange(request, path)
    try:
        ex.conversation_id = routing_header(request, CONVERSATION_HEADER)
        admission = ex.ctx.admission
        # Admitted before the body is read: reading and parsing a body is work a user's share must cover.
        if not admission.enter(ex.user_id):
            await admission.wait(request, ex.user_id)
        try:
            await read_body(ex)
            if ex.stream:
                admission.streaming()
            return await _serve(ex)
        finally:
            admission.give_body_bytes(ex.user_id, ex.body_bytes)
            admission.leave(ex.user_id, stream=ex.stream)
    except GatewayError as exc:
        ex.status = exc.status
        ex.error_class = exc.__class__.__name__
        exc.headers.update(ex.headers())
        if isinstance(exc, RequestTimeout):  # a body too slow: answered, then the connection shut
            return await _closing(request, exc)
        raise
    except asyncio.CancelledError:
        ex.status = CLIENT_CLOSED
        raise
    finally:
        _account(ex)


async def _closing(request: web.Request, error: GatewayError) -> web.StreamResponse:
    """The error answered and the gateway's side of the connection shut: the client reads the answer, then the
    end of the stream. Closed outright, the client's bytes still arriving would reset the connection, and with it
    the answer not yet read; aiohttp discards what still arrives for at most its lingering time (10 s)."""
    response = error_response(error)
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    transport = request.transport
    if transport is not None and transport.can_write_eof():
        transport.write_eof()
    return response


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
        if blame(failure) is Blame.CLIENT:
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
    verdict = blame(failure)
    if response is not None:  # the stream broke after its first byte: no failover now
        ex.error_class = failure.__class__.__name__
        if verdict is not Blame.PROVIDER:
            cooldowns.released(configuration.id)
        elif cooldowns.failed(configuration.id):
            metrics.cooldowns.inc()
        return
    if verdict is Blame.GATEWAY:  # its translation worker failed, or the stored key could not be decrypted
        metrics.attempt["gateway_error" if isinstance(failure, TranslationUnavailable) else "key_error"].inc()
        cooldowns.released(configuration.id)  # neither verdict: a half-open probe is free again
        return
    # The cause by class and status only: upstream texts and aiohttp's messages may quote URLs or keys.
    log.warning("upstream attempt failed: request_id=%s configuration_id=%s status=%s code=%s cause=%s",
                ex.request_id, configuration.id, failure.status, field_value(failure.code),
                failure.__cause__.__class__.__name__ if failure.__cause__ is not None else f"HTTP {failure.status}")
    if verdict is Blame.CLIENT:
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
        raw, content_type = ex.raw, None
        if ex.form is not None:  # written for this target: its model in the form's model field
            raw, content_type = ex.form.payload(target.model), ex.form.content_type
        answer = await dispatch.call(
            ex.ctx.http, ex.ctx.translator, target, path=ex.path, body=ex.body, raw=raw,
            stream=ex.stream, max_body_bytes=ex.ctx.settings.max_upstream_body_bytes,
            client_headers=ex.request.headers, content_type=content_type, user=ex.user_id)
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
    except (UpstreamError, TranslationUnavailable) as exc:  # another configuration may answer
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
        raise invalid_stream()
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
            failure = stream_cut()
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
