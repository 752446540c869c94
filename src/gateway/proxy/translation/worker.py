"""The translation worker: a child process of the gateway that owns litellm (`-m gateway.proxy.translation.worker`).

litellm costs the process that imports it ~170 MiB and seconds; here it lives in a process of its own, started by
the gateway on the first translated request (client.py), serving many calls at once on a Unix socket in a
private directory. Every call must carry the secret the gateway gave on stdin. The call's target carries the
decrypted key: it is used for that one call, sent only to the target's base_url, and never logged (logging is
the gateway's own set-up, with litellm, httpx and openai held at WARNING).

Outbound HTTP goes through a session of the worker's own with the gateway's guards: litellm's handler gets our
httpx transport (guarded_http), the URL policy judges every URL, and the resolver judges every connect, asking
the gateway for the lookup itself (so the gateway's resolver, and its DNS, decide where a connection goes).
The worker exits when its stdin ends (the gateway exited or stopped it)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import itertools
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import orjson
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import BaseModel, ConfigDict, StrictStr, TypeAdapter, ValidationError

from gateway import logs
from gateway.configurations.providers import _litellm as import_litellm
from gateway.crypto.masking import scrub
from gateway.errors import BadRequest, GatewayError, UpstreamError
from gateway.proxy.forward import Target, error_from_answer, invalid_stream, stream_cut, transport_error
from gateway.proxy.translation import protocol
from gateway.proxy.translation.bounds import refuse_remote_urls
from gateway.ssrf import UnsafeURLError, UrlPolicy
from gateway.web.resolver import guarded_session

if TYPE_CHECKING:  # imported with litellm, as guarded_http is
    from gateway.proxy.guarded_http import Exchanges

log = logging.getLogger("gateway.translation.worker")

# OpenAI chat parameters a client may send; anything else would reach litellm's own options (headers,
# fallbacks, callbacks...), which are the gateway's business, not the client's.
CHAT_PARAMS = frozenset({
    "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "presence_penalty",
    "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user", "tools", "tool_choice",
    "parallel_tool_calls", "response_format", "seed", "stream", "stream_options", "reasoning_effort", "metadata",
    "service_tier", "functions", "function_call", "thinking", "top_k", "model",
})
# What the OpenAI path's boundary (forward.upstream_errors) translates; litellm wraps them in its own classes.
TRANSPORT_FAILURES = (TimeoutError, UnsafeURLError, aiohttp.ClientError)
LOOKUP_TIMEOUT_S = 30.0
MAX_REFUSAL_DETAIL = 300
# How a provider's event stream opens and ends, where litellm does not check it (it skips events it cannot parse
# and ends a cut stream with a finish of its own): Anthropic's message_start ... message_stop.
STREAM_EDGES = {"anthropic": (b"message_start", b"message_stop")}


class _Message(BaseModel):
    """What litellm needs of a chat message to translate it: a role it knows, and text or a list of parts."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: StrictStr | list[dict[str, Any]] | None = None


_MESSAGES = TypeAdapter(list[_Message])


@dataclass
class Worker:
    """litellm, its guarded HTTP handler, and what a call needs from the spawn configuration."""

    litellm: Any
    handler: Any
    secret: str
    timeout_s: float


# -- litellm's side: moved here from the gateway process, unchanged in what it does -----------------------------

def _params(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - CHAT_PARAMS)
    if unknown:
        raise BadRequest(f"Field '{unknown[0]}' is not supported for this provider", param=unknown[0],
                         code="unsupported_parameter")
    messages = body.get("messages")
    # litellm reports a malformed list as a connection error: said here, as what it is.
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("Field 'messages' must be a non-empty list of message objects", param="messages",
                         code="invalid_type")
    try:
        _MESSAGES.validate_python(messages)
    except ValidationError as exc:
        # The first problem, named as OpenAI names it (messages[0].content), without the value sent.
        error = exc.errors(include_input=False, include_url=False)[0]
        index, field = error["loc"][0], error["loc"][1]
        param = f"messages[{index}].{field}"
        raise BadRequest(f"Invalid '{param}': {error['msg']}", param=param, code="invalid_value") from None
    refuse_remote_urls(messages)
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


def translate_error(exc: BaseException, target: Target, exchanges: Exchanges
                    ) -> tuple[GatewayError, BaseException | None]:
    """litellm's exception as the OpenAI path's error for the same failure (transport errors included), and the
    transport exception to chain it to (None: litellm's own chain quotes request details). A call that never
    went out is the client's request, refused (400); an answer litellm could not read, the provider's (502)."""
    import openai

    chain = _chain(exc)
    for link in chain:
        if isinstance(link, UpstreamError):  # ours, raised inside litellm's read (an answer too large)
            return link, None
    answer = _answer_of(exc, chain)
    # Only an error the provider answered with: litellm's statuses for what it refused or could not read are its own.
    if answer is not None and (exchanges.status or 0) >= 400:
        status, body, headers = answer
        return error_from_answer(status, body, api_key=target.api_key, headers=headers), None
    # The outermost transport failure litellm wrapped is what the OpenAI path would have caught.
    for link in chain:
        if isinstance(link, TRANSPORT_FAILURES):
            return transport_error(link, target), link
    if isinstance(exc, openai.APITimeoutError):
        return transport_error(TimeoutError(), target), None
    return untranslatable(exc, target, exchanges), None


def untranslatable(exc: BaseException, target: Target, exchanges: Exchanges | None) -> GatewayError:
    """A failure of litellm's that is neither an answer nor a transport error. Before anything went out it is
    the client's request that cannot be translated: a 400, so it neither fails over nor cools the configuration
    down. After, it is the provider's answer that cannot be read: a 502, as a garbled answer on the OpenAI path."""
    name = target.name or target.provider
    if exchanges is None or not exchanges.sent:
        detail = scrub(str(exc).strip().split("\n", 1)[0], target.api_key)[:MAX_REFUSAL_DETAIL]
        return BadRequest(f"The request cannot be translated for '{name}': {detail or exc.__class__.__name__}",
                          code="translation_refused")
    return UpstreamError(f"The answer of the upstream of '{name}' could not be translated ({exc.__class__.__name__})",
                         code="upstream_invalid_response")


def _failures() -> tuple[type[BaseException], ...]:
    import httpx
    import openai

    return (openai.OpenAIError, httpx.HTTPError, aiohttp.ClientError, TimeoutError)


async def _call(worker: Worker, target: Target, body: dict[str, Any], timeout_s: float, exchanges: Exchanges,
                **extra: Any) -> Any:
    from gateway.proxy.guarded_http import EXCHANGES, check_guarded

    params = _params(body)
    check_guarded(worker.handler, target.base_url)
    EXCHANGES.set(exchanges)  # this call's task only: its transport records what went out and came back
    try:
        return await worker.litellm.acompletion(
            model=f"{target.litellm_provider}/{target.model}", api_base=target.base_url, api_key=target.api_key,
            client=worker.handler, timeout=timeout_s, num_retries=0, drop_params=True, **params, **extra)
    except _failures() as exc:
        error, cause = translate_error(exc, target, exchanges)
        raise error from cause


async def complete(worker: Worker, target: Target, body: dict[str, Any], timeout_s: float) -> bytes:
    """A non-streamed chat completion, answered in OpenAI's shape."""
    from gateway.proxy.guarded_http import Exchanges

    response = await _call(worker, target, body, timeout_s, Exchanges())
    return orjson.dumps(response.model_dump(exclude_none=True))


def _frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def stream(worker: Worker, target: Target, body: dict[str, Any], timeout_s: float
                 ) -> AsyncGenerator[bytes, None]:
    """A streamed chat completion as OpenAI's SSE frames, with the usage in a chunk of its own at the end."""
    from gateway.proxy.guarded_http import Exchanges

    exchanges = Exchanges()
    wrapper = await _call(worker, target, body, timeout_s, exchanges, stream=True,
                          stream_options={"include_usage": True})
    edges = STREAM_EDGES.get(target.litellm_provider)
    try:
        async for chunk in wrapper:
            if edges is not None and edges[0] not in exchanges.head:
                # Before the first frame: on the OpenAI path too a stream that is no JSON events fails over.
                raise invalid_stream()
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
        error, cause = translate_error(exc, target, exchanges)
        raise error from cause
    if edges is not None and edges[1] not in exchanges.tail:
        # A cut answer, as the OpenAI path calls one that stops before its [DONE].
        raise stream_cut()
    yield b"data: [DONE]\n\n"


# -- the socket's side ------------------------------------------------------------------------------------------

def _unexpected(exc: BaseException, target: Target) -> GatewayError:
    """A failure inside litellm that is no upstream answer: logged (key scrubbed), the client's request refused
    when nothing went out, else the provider's answer unreadable."""
    from gateway.proxy.guarded_http import EXCHANGES

    text = scrub("".join(traceback.format_exception(exc)), target.api_key)
    log.error("translation failed: provider=%s model=%s error=%s", target.provider, logs.field_value(target.model),
              logs.field_value(text))
    return untranslatable(exc, target, EXCHANGES.get())


def _target(doc: dict[str, Any]) -> Target:
    fields = doc["target"]
    return Target(provider=str(fields["provider"]), wire=str(fields["wire"]),
                  litellm_provider=str(fields["litellm_provider"]), base_url=str(fields["base_url"]),
                  model=str(fields["model"]), api_key=str(fields["api_key"]), name=str(fields["name"]))


def handler_of(worker: Worker) -> Any:
    """The one route: a translated call, answered as frames."""
    expected = worker.secret.encode()

    async def translate(request: web.Request) -> web.StreamResponse:
        if not hmac.compare_digest(request.headers.get(protocol.SECRET_HEADER, "").encode(), expected):
            return web.Response(status=403, text="forbidden")
        try:
            doc = orjson.loads(await request.read())
            target, body = _target(doc), doc["body"]
            timeout_s = float(doc.get("timeout_s") or worker.timeout_s)
            streamed = bool(doc["stream"])
            if not isinstance(body, dict):
                raise TypeError("body")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return web.Response(status=400, text="malformed call")
        del doc
        response = web.StreamResponse(headers={"Content-Type": protocol.FRAMES_TYPE})
        # The headers go out before the upstream is called: the gateway may send a call again to a new worker
        # when this one dies, but only a call it never saw acknowledged (never sent to the upstream).
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # the gateway left: the call was cancelled, nothing to say
            await _answer(response, worker, target, body, timeout_s, streamed)
            await response.write_eof()
        return response

    return translate


async def _answer(response: web.StreamResponse, worker: Worker, target: Target, body: dict[str, Any],
                  timeout_s: float, streamed: bool) -> None:
    """The call's frames: the whole answer, or each SSE frame as litellm yields it (buffering would delay the
    first token); an error (before any data: the gateway fails over; after: it ends the client's stream)."""
    try:
        if not streamed:
            await response.write(protocol.frame(protocol.DATA, await complete(worker, target, body, timeout_s)))
        else:
            chunks = stream(worker, target, body, timeout_s)
            try:
                async for chunk in chunks:
                    await response.write(protocol.frame(protocol.DATA, chunk))
            finally:
                await chunks.aclose()
    except GatewayError as exc:
        await response.write(protocol.frame(protocol.ERROR, protocol.error_doc(exc)))
    except ConnectionError:
        raise
    except Exception as exc:  # noqa: BLE001 - litellm's unexpected failures become a clean 502
        await response.write(protocol.frame(protocol.ERROR, protocol.error_doc(_unexpected(exc, target))))
    else:
        await response.write(protocol.frame(protocol.END))


class Pipes:
    """The stdin/stdout lines to the gateway: its name lookups, and the end of stdin (time to exit)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    def send(self, message: dict[str, Any]) -> None:
        """One line to the gateway."""
        self.writer.write(orjson.dumps(message) + b"\n")

    async def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a request line and wait for the gateway's answer to it."""
        number = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[number] = future
        try:
            self.send({**message, "id": number})
            return await asyncio.wait_for(future, LOOKUP_TIMEOUT_S)
        finally:
            self.pending.pop(number, None)

    async def serve_until_eof(self) -> None:
        """Hand each answer to its question until stdin ends."""
        async for message in protocol.messages(self.reader):
            number = message.get("resolved")
            future = self.pending.get(number) if isinstance(number, int) else None
            if future is not None and not future.done():
                future.set_result(message)


class GatewayLookup(AbstractResolver):
    """Name lookups done by the gateway's resolver (its DNS, its policy); refusals and failures as it raised them."""

    def __init__(self, pipes: Pipes) -> None:
        self.pipes = pipes

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        """Ask the gateway."""
        answer = await self.pipes.ask({"resolve": host, "port": port, "family": int(family)})
        refused = answer.get("refused")
        if isinstance(refused, dict):
            raise UnsafeURLError(str(refused.get("reason")), category=str(refused.get("category")))
        addresses = answer.get("addresses")
        if not isinstance(addresses, list):
            raise OSError(str(answer.get("error") or "name lookup failed"))
        return [ResolveResult(hostname=str(a["hostname"]), host=str(a["host"]), port=int(a["port"]),
                              family=int(a["family"]), proto=int(a["proto"]), flags=int(a["flags"]))
                for a in addresses]

    async def close(self) -> None:
        """Nothing to release."""


def _warm_answer(request: Any) -> Any:
    """A canned Anthropic answer (whole or streamed) for the warm-up call."""
    import httpx

    usage = {"input_tokens": 1, "output_tokens": 1}
    message: dict[str, Any] = {"id": "msg_warm_up", "type": "message", "role": "assistant", "model": "warm-up",
               "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
               "usage": usage}
    if not orjson.loads(request.content).get("stream"):
        return httpx.Response(200, json=message)
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"message": {**message, "content": [], "stop_reason": None}}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "ok"}}),
        ("content_block_stop", {"index": 0}),
        ("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": usage}),
        ("message_stop", {}),
    ]
    text = b"".join(b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"
                    for name, data in events)
    return httpx.Response(200, content=text, headers={"Content-Type": "text/event-stream"})


async def _warm_up(litellm: Any, handler_class: Any) -> None:
    """One whole and one streamed Anthropic call against a canned answer (no network): litellm loads a few
    dozen modules on its first call, which would otherwise land on the first client's latency."""
    import httpx

    handler = handler_class(transport=httpx.MockTransport(_warm_answer))
    try:
        for streamed in (False, True):
            answer = await litellm.acompletion(
                model="anthropic/warm-up", api_base="http://warm-up.invalid", api_key="warm-up", client=handler,
                messages=[{"role": "user", "content": "hi"}], max_tokens=1, num_retries=0, stream=streamed,
                **({"stream_options": {"include_usage": True}} if streamed else {}))
            if streamed:
                async for _chunk in answer:
                    pass
    except Exception as exc:  # noqa: BLE001 - a failed warm-up only costs the first call its latency
        log.warning("translation worker warm-up failed: %s", exc.__class__.__name__)
    finally:
        await handler.close()


async def serve(pipes: Pipes, config: dict[str, Any]) -> None:
    """Import litellm, listen, say ready, serve until stdin ends."""
    litellm = import_litellm()  # first: it sets litellm's offline switches before anything of litellm loads
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

    from gateway.proxy.guarded_http import GuardedTransport

    await _warm_up(litellm, AsyncHTTPHandler)
    # litellm's objects are here to stay: out of the collector's way, or a first full collection (a few
    # hundred milliseconds over litellm's heap) lands on some call.
    gc.collect()
    gc.freeze()
    urls = UrlPolicy(allow_private=bool(config["allow_private"]))
    async with guarded_session(urls, lookup=GatewayLookup(pipes), max_connections=int(config["max_connections"]),
                               max_connections_per_host=int(config["max_connections_per_host"]),
                               connect_timeout_s=float(config["connect_timeout_s"]),
                               read_timeout_s=float(config["timeout_s"])) as http:
        handler = AsyncHTTPHandler(timeout=float(config["timeout_s"]), follow_redirects=False,
                                   transport=GuardedTransport(http, urls=urls,
                                                              max_body_bytes=int(config["max_body_bytes"])))
        worker = Worker(litellm, handler, str(config["secret"]), float(config["timeout_s"]))
        app = web.Application(client_max_size=int(config["max_request_bytes"]))
        app.router.add_post(protocol.PATH, handler_of(worker))
        # No access log (nothing in it is needed); a call the gateway abandons is cancelled, upstream call included.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await runner.setup()
        path = str(config["socket"])
        await web.UnixSite(runner, path, backlog=1024).start()
        os.chmod(path, 0o600)
        pipes.send({"ready": True, "pid": os.getpid()})
        await pipes.writer.drain()
        try:
            await pipes.serve_until_eof()
        finally:
            await runner.cleanup()
            await handler.close()  # type: ignore[no-untyped-call]


async def run() -> None:
    """Wire the pipes (stdout is the gateway's line; print() goes to stderr) and serve."""
    loop = asyncio.get_running_loop()
    lines = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything printed lands on stderr, never in the gateway's line
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol_ = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, lines)
    writer = asyncio.StreamWriter(transport, protocol_, None, loop)
    first = await reader.readline()
    if not first:
        return
    config = orjson.loads(first)
    logs.configure(str(config.get("log_level", "INFO")), str(config.get("log_format", "text")))
    loop.add_signal_handler(signal.SIGTERM, lambda: reader.feed_eof())
    await serve(Pipes(reader, writer), config)


def main() -> None:
    """Entry point; Ctrl-C in the gateway's terminal is the gateway's to handle: the worker ends with its stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # the gateway's own event loop when installed (as `serve` does)
        import uvloop
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(run())


if __name__ == "__main__":
    main()
