"""Fake OpenAI API: a real aiohttp server speaking OpenAI's wire format, driven by tests at run time.

Endpoints: POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses; GET /v1/models; the
multipart uploads POST /v1/audio/transcriptions and /v1/files (a 400 without a boundary, as OpenAI answers).
Auth is ``Authorization: Bearer <key>`` against the server's accepted keys (401 + OpenAI's envelope).

In a test (pytest-aiohttp)::

    fake = await start_openai_upstream(aiohttp_server)          # fake.url == "http://127.0.0.1:<port>/v1"
    fake.behaviour.chunk_delay_s = 0.05                          # change how it answers, any time
    fake.script([500, 429, {"status": 429, "retry_after": "3"}, 200])   # one step per request, then behaviour
    ... ; fake.requests[-1].body["model"]                         # everything it received

Standalone (benchmarks, process-level tests; needs no pytest), from the repository root::

    python -m tests.fakes.openai_upstream --port 9100 --key sk-bench-0001 [--chunks 5] [--chunk-delay 0.01]

``FakeUpstream`` (the shared machinery, also used by ``anthropic_upstream``) lives here too. Control endpoints
for out-of-process tests, unauthenticated and never recorded: ``GET /_fake/requests``,
``POST /_fake/behaviour`` (JSON: Behaviour fields, plus ``"script": [...]``), ``POST /_fake/reset``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import itertools
import math
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, Self

import orjson
from aiohttp import web

from tests.fakes.multipart import MultipartError, parse_form
from tests.fakes.tools import forced_tool, structured_content, tool_call

Garbage = Literal["non_json", "truncated_sse", "reset"]
# Where a chat stream puts the usage asked for with stream_options.include_usage: a chunk of its own with
# "choices": [] (OpenAI), a chunk whose one choice has an empty delta (LiteLLM's proxy), or on the last chunk.
UsageChunk = Literal["own", "empty_delta", "last"]
# A scripted step: a bare status, or Behaviour field overrides for that one request.
Step = int | Mapping[str, Any]

DEFAULT_OPENAI_KEY = "sk-test-openai-0000000000000001"
_MAX_BODY = 64 * 1024 * 1024  # never smaller than the gateway's own limit, so the gateway's is what tests hit


@dataclass
class Behaviour:
    """How the fake answers the next requests; tests change fields at run time."""

    status: int = 200  # >= 400 answers with the provider's real error envelope for that status
    retry_after: str | None = None  # Retry-After header value on error answers
    delay_s: float = 0.0  # before anything (headers included) is sent
    chunk_delay_s: float = 0.0  # between consecutive stream events
    end_delay_s: float = 0.0  # after a stream's last event, before its HTTP end (as LiteLLM's proxy ends late)
    chunks: int = 3  # number of content deltas a stream carries
    content: str = "Hello from the fake upstream."
    prompt_tokens: int = 11  # OpenAI prompt_tokens / Anthropic input_tokens
    completion_tokens: int = 7  # OpenAI completion_tokens / Anthropic output_tokens
    report_usage: bool = True  # False: no usage anywhere (some providers omit it)
    usage_chunk: UsageChunk = "own"
    finish_reason: str = "stop"  # Anthropic maps "stop" to its own "end_turn"
    echo_key_in_error: bool = False  # error bodies quote the received API key verbatim (scrubbing tests)
    error_message: str | None = None  # overrides the canned error message
    sse_errors: bool = False  # error answers as one server-sent error event (a streamed Responses API error, a 529)
    garbage: Garbage | None = None  # non-JSON 200 body / stream cut without its end / connection reset
    hang: bool = False  # never answer (until the client leaves or the server stops)
    embedding_dims: int = 8
    models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")


@dataclass
class RequestRecord:
    """One request the fake received, and what became of it (times are time.monotonic())."""

    method: str
    path: str
    headers: dict[str, str] = field(repr=False)  # repr=False: keeps keys out of assertion output
    body: Any  # parsed JSON or multipart form (tests.fakes.multipart), or None when absent or unreadable
    api_key: str | None = field(repr=False)
    started_at: float
    status: int | None = None
    stream: bool = False
    finished_at: float | None = None
    chunk_times: list[float] = field(default_factory=list)  # after each stream event was written
    client_disconnected: bool = False  # the client went away before the answer was complete
    completed: bool = False  # the whole answer (stream end included) was written
    form_error: str | None = None  # why a multipart body could not be read

    @property
    def model(self) -> str | None:
        """The model the request asked for."""
        return self.body.get("model") if isinstance(self.body, dict) else None


# An endpoint's own answer, given the request, its record, the behaviour in force and the JSON body.
Answer = Callable[[web.Request, RequestRecord, Behaviour, dict[str, Any]], Awaitable[web.StreamResponse]]


class ServerFactory(Protocol):
    """pytest-aiohttp's ``aiohttp_server`` fixture."""

    def __call__(self, app: web.Application, **kwargs: Any) -> Awaitable[Any]: ...


class _Stopping(Exception):
    """The server is shutting down while a request waits."""


_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    """A unique, provider-looking identifier (cheap: benchmarks call this per request)."""
    return f"{prefix}{next(_ids):024d}"


def split_content(text: str, n: int) -> list[str]:
    """Cut text into n consecutive pieces that join back to it."""
    n = max(1, n)
    return [text[i * len(text) // n : (i + 1) * len(text) // n] for i in range(n)]


def mask_key(key: str) -> str:
    """Mask a key the way providers quote it in errors: never the whole key."""
    return "****" if len(key) <= 8 else f"{key[:3]}...{key[-3:]}"


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event frame."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + payload + b"\n\n"


def dump_json(obj: Any) -> bytes:
    """JSON bytes."""
    return orjson.dumps(obj)


class FakeUpstream:
    """Shared machinery: behaviour, scripted steps, request records, lifecycle; subclasses add endpoints."""

    default_key: ClassVar[str] = DEFAULT_OPENAI_KEY
    api_suffix: ClassVar[str] = ""  # what .url adds to the server root
    invalid_json_message: ClassVar[str] = "The request body is not valid JSON."

    def __init__(self, keys: Iterable[str] | None = None, *, record: bool = True, **behaviour: Any) -> None:
        self.keys = frozenset(keys if keys is not None else (self.default_key,))
        self._initial = dict(behaviour)
        self.behaviour = Behaviour(**behaviour)
        self.record = record  # False keeps memory flat under a benchmark's millions of requests
        self.requests: list[RequestRecord] = []
        self.open_requests = 0
        self.peak_open_requests = 0
        self.root_url = ""
        self._steps: deque[Step] = deque()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=_MAX_BODY)
        self.app.on_shutdown.append(self._on_shutdown)
        self.app.router.add_get("/_fake/requests", self._control_requests)
        self.app.router.add_post("/_fake/behaviour", self._control_behaviour)
        self.app.router.add_post("/_fake/reset", self._control_reset)
        self.add_routes(self.app.router)

    # -- for tests -------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL a client is configured with."""
        return self.root_url + self.api_suffix

    @property
    def last_request(self) -> RequestRecord:
        """The most recent request received."""
        return self.requests[-1]

    def requests_to(self, path: str) -> list[RequestRecord]:
        """Records whose path is exactly path (e.g. "/v1/chat/completions")."""
        return [r for r in self.requests if r.path == path]

    def script(self, steps: Sequence[Step]) -> None:
        """Replace the queue of scripted steps; each request consumes one, then ``behaviour`` applies."""
        self._steps = deque(steps)

    @property
    def pending_steps(self) -> int:
        """Scripted steps not yet consumed."""
        return len(self._steps)

    def reset(self) -> None:
        """Back to the construction-time behaviour, with no records and no script."""
        self.behaviour = Behaviour(**self._initial)
        self.requests.clear()
        self._steps.clear()
        self.peak_open_requests = self.open_requests

    def attach(self, server: Any) -> Self:
        """Take the address of an aiohttp TestServer already serving ``self.app``."""
        self.root_url = str(server.make_url("")).rstrip("/")
        return self

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Self:
        """Serve on host:port (0 = any free port) without pytest."""
        # handler_cancellation: a client that leaves cancels its handler, which is how disconnects are seen.
        self._runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.root_url = f"http://{bound_host}:{bound_port}"
        return self

    async def close(self) -> None:
        """Stop a server started with start()."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start() if not self.root_url else self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- for subclasses --------------------------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register the provider's endpoints (wrap handlers with self.endpoint)."""
        raise NotImplementedError

    def key_of(self, request: web.Request) -> str | None:
        """The API key the request presents."""
        raise NotImplementedError

    def auth_error(self, request: web.Request, key: str | None, b: Behaviour) -> web.Response:
        """Answer for a missing or unknown key."""
        raise NotImplementedError

    def error_response(self, status: int, b: Behaviour, key: str | None, body: Any) -> web.Response:
        """The provider's error answer for status."""
        raise NotImplementedError

    def bad_request(self, message: str, param: str | None = None) -> web.Response:
        """The provider's 400 for a malformed request."""
        raise NotImplementedError

    def error_event(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """The data of the provider's streamed error event carrying the error of a JSON envelope."""
        raise NotImplementedError

    def sse_error(self, error: web.Response) -> web.Response:
        """The same error answer as the provider streams it: one `event: error`, same status and headers."""
        assert isinstance(error.body, bytes)
        headers = {k: v for k, v in error.headers.items() if k.lower() not in ("content-type", "content-length")}
        return web.Response(status=error.status, body=sse(self.error_event(orjson.loads(error.body)), event="error"),
                            headers={**headers, "Content-Type": "text/event-stream; charset=utf-8"})

    def validate(self, request: web.Request, body: dict[str, Any]) -> web.Response | None:
        """A 4xx answer when the request is malformed for its endpoint, else None."""
        return None

    def stream_headers(self) -> dict[str, str]:
        """Headers on a streamed answer."""
        return {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}

    def json_response(self, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
        """A JSON answer."""
        return web.Response(body=dump_json(obj), status=status, headers=headers, content_type="application/json")

    def endpoint(self, answer: Answer) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap an endpoint with recording, auth, scripted behaviour, delays and garbage modes."""

        async def handler(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            body, form_error = _parse_body(request, raw)
            key = self.key_of(request)
            rec = RequestRecord(
                method=request.method,
                path=request.path,
                # Plain str keys, lower-cased; skipped when not recording (benchmarks).
                headers={k.lower(): v for k, v in request.headers.items()} if self.record else {},
                body=body,
                api_key=key,
                started_at=time.monotonic(),
                stream=isinstance(body, dict) and body.get("stream") is True,
                form_error=form_error,
            )
            if self.record:
                self.requests.append(rec)
            self.open_requests += 1
            self.peak_open_requests = max(self.peak_open_requests, self.open_requests)
            try:
                resp = await self._answer(request, rec, body, key, answer)
                rec.status = resp.status
                if not resp.prepared and _connected(request):
                    rec.completed = True  # a plain answer that aiohttp writes in one go once we return it
                return resp
            except asyncio.CancelledError:
                # handler_cancellation: aiohttp cancels the handler when the client's connection drops.
                rec.client_disconnected = not self._stopping.is_set()
                raise
            except _Stopping:
                _abort(request)
                return web.Response(status=503)
            finally:
                self.open_requests -= 1
                rec.finished_at = time.monotonic()

        return handler

    async def _answer(
        self, request: web.Request, rec: RequestRecord, body: Any, key: str | None, answer: Answer
    ) -> web.StreamResponse:
        """Everything between receiving a request and the endpoint's own answer."""
        if key is None or key not in self.keys:
            return self.auth_error(request, key, self.behaviour)  # a bad key does not consume a scripted step
        b = self._next_behaviour()
        await self.pause(b.delay_s)
        if b.hang:
            await self.pause(None)
        if rec.form_error is not None:
            return self.bad_request(rec.form_error)
        if request.method == "POST" and not isinstance(body, dict):
            return self.bad_request(self.invalid_json_message)
        if b.status >= 400:
            error = self.error_response(b.status, b, key, body)
            return self.sse_error(error) if b.sse_errors else error
        if request.method == "POST" and (invalid := self.validate(request, body)) is not None:
            return invalid
        if b.garbage is not None and not rec.stream:
            return await self._garbage_json(request, b)
        return await answer(request, rec, b, body if isinstance(body, dict) else {})

    def _next_behaviour(self) -> Behaviour:
        """The behaviour for this request: the next scripted step over ``behaviour``, or ``behaviour`` itself."""
        if not self._steps:
            return self.behaviour
        step = self._steps.popleft()
        overrides = {"status": step} if isinstance(step, int) else dict(step)
        return dataclasses.replace(self.behaviour, **overrides)

    async def pause(self, seconds: float | None) -> None:
        """Sleep (forever when None); a server shutdown cuts it short so teardown never waits on a hang."""
        if seconds is not None and seconds <= 0:
            return
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return
        raise _Stopping

    async def _garbage_json(self, request: web.Request, b: Behaviour) -> web.StreamResponse:
        """A broken non-streamed answer."""
        if b.garbage == "non_json":
            # Claims JSON, is not: what a misconfigured proxy in front of a provider sends.
            return web.Response(
                status=200, body=b"<html><body>502 upstream says hi</body></html>", content_type="application/json"
            )
        if b.garbage == "reset":
            _abort(request, reset=True)
            return web.Response(status=200)  # never reaches the wire; aiohttp shrugs off the closed transport
        # truncated: headers and half a body, then the connection drops.
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b'{"id": "cut-short", "object": "chat.completion", "choi')
        _abort(request)
        return resp

    async def stream(
        self, request: web.Request, rec: RequestRecord, b: Behaviour, frames: Sequence[bytes]
    ) -> web.StreamResponse:
        """Write frames one by one, each flushed, with chunk_delay_s between them and garbage modes applied."""
        resp = web.StreamResponse(status=200, headers=self.stream_headers())
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if b.garbage == "non_json":
            frames = [b"data: {this is not json\n\n", b"data: neither is this}\n\n", frames[-1]]
        cut = max(1, len(frames) // 2) if b.garbage in ("truncated_sse", "reset") else None
        for i, frame in enumerate(frames):
            if i == cut:
                if b.garbage == "reset":
                    _abort(request, reset=True)
                    return resp
                await resp.write_eof()  # a clean HTTP end, but the stream's own end never came
                return resp
            if i:
                await self.pause(b.chunk_delay_s)
            try:
                await resp.write(frame)
            except ConnectionError:
                rec.client_disconnected = True
                return resp
            rec.chunk_times.append(time.monotonic())
        await self.pause(b.end_delay_s)
        try:
            await resp.write_eof()
        except ConnectionError:
            rec.client_disconnected = True
            return resp
        rec.completed = True
        return resp

    # -- control endpoints -----------------------------------------------------------------------------------

    async def _control_requests(self, request: web.Request) -> web.Response:
        records = [dataclasses.asdict(r) for r in self.requests]
        return web.Response(body=dump_json(records), content_type="application/json")

    async def _control_behaviour(self, request: web.Request) -> web.Response:
        changes = orjson.loads(await request.read() or b"{}")
        if "script" in changes:
            self.script(changes.pop("script"))
        if "models" in changes:
            changes["models"] = tuple(changes["models"])
        self.behaviour = dataclasses.replace(self.behaviour, **changes)
        return web.Response(body=dump_json(dataclasses.asdict(self.behaviour)), content_type="application/json")

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(status=204)

    async def _on_shutdown(self, app: web.Application) -> None:
        self._stopping.set()


def _parse_body(request: web.Request, raw: bytes) -> tuple[Any, str | None]:
    """The JSON or multipart form a request carries (None when absent or unreadable), and why a form is not."""
    if request.content_type == "multipart/form-data":
        try:
            return parse_form(request.headers.get("Content-Type", ""), raw), None
        except MultipartError as exc:
            return None, str(exc)
    if not raw:
        return None, None
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError:
        return None, None


def _connected(request: web.Request) -> bool:
    """Whether the request's connection is still open."""
    transport = request.transport
    return transport is not None and not transport.is_closing()


def _abort(request: web.Request, *, reset: bool = False) -> None:
    """Drop the connection now; with reset, as a TCP RST (SO_LINGER 0) rather than a FIN."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# -- OpenAI ----------------------------------------------------------------------------------------------------

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    # status: (type, code, message)
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: {masked}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    402: (
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details. For more information on "
        "this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
    ),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    408: ("timeout", None, "Request timed out."),
    409: ("invalid_request_error", None, "Conflict."),
    413: ("invalid_request_error", None, "Request too large."),
    422: ("invalid_request_error", None, "Unprocessable request."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} in organization org-fake on requests per min (RPM): Limit 3, Used 3, "
        "Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more.",
    ),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}


def openai_error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class FakeOpenAI(FakeUpstream):
    """A fake OpenAI API server."""

    default_key = DEFAULT_OPENAI_KEY
    api_suffix = "/v1"
    invalid_json_message = (
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
        "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
    )

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/chat/completions", self.endpoint(self._chat))
        router.add_post("/v1/completions", self.endpoint(self._completions))
        router.add_post("/v1/embeddings", self.endpoint(self._embeddings))
        router.add_post("/v1/responses", self.endpoint(self._responses))
        router.add_get("/v1/models", self.endpoint(self._models))
        router.add_post("/v1/audio/transcriptions", self.endpoint(self._transcriptions))
        router.add_post("/v1/audio/translations", self.endpoint(self._transcriptions))
        router.add_post("/v1/files", self.endpoint(self._files))
        router.add_post("/v1/images/edits", self.endpoint(self._image_edits))
        router.add_post("/v1/moderations", self.endpoint(self._moderations))

    def key_of(self, request: web.Request) -> str | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return (key.strip() or None) if scheme.lower() == "bearer" else None

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"x-request-id": new_id("req_"), "openai-processing-ms": "1", **(extra or {})}

    def stream_headers(self) -> dict[str, str]:
        return {**super().stream_headers(), **self._headers()}

    def json_response(self, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
        return super().json_response(obj, status, self._headers(headers))

    def auth_error(self, request: web.Request, key: str | None, b: Behaviour) -> web.Response:
        if key is None:
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) "
                "if you're accessing the API from your browser and are prompted for a username and password. You can "
                "obtain an API key from https://platform.openai.com/account/api-keys."
            )
            return self.json_response(openai_error(message, "invalid_request_error"), 401)
        return self.error_response(401, b, key, None)

    def error_response(self, status: int, b: Behaviour, key: str | None, body: Any) -> web.Response:
        fallback = ("server_error" if status >= 500 else "invalid_request_error", None, "Upstream error.")
        type_, code, template = _OPENAI_ERRORS.get(status, fallback)
        model = body.get("model") if isinstance(body, dict) else None
        shown = (key or "") if b.echo_key_in_error else mask_key(key or "")
        message = b.error_message or template.format(masked=shown, model=model or "gpt-4o-mini")
        if b.echo_key_in_error and key and key not in message:
            message += f" (request made with API key {key})"
        headers = {"retry-after": b.retry_after} if b.retry_after is not None else {}
        return self.json_response(openai_error(message, type_, code), status, headers)

    def bad_request(self, message: str, param: str | None = None) -> web.Response:
        return self.json_response(openai_error(message, "invalid_request_error", None, param), 400)

    def error_event(self, envelope: dict[str, Any]) -> dict[str, Any]:
        error = envelope["error"]  # the Responses API's streamed `error` event
        return {"type": "error", "code": error["code"] or error["type"], "message": error["message"],
                "param": error["param"], "sequence_number": 0}

    def validate(self, request: web.Request, body: dict[str, Any]) -> web.Response | None:
        if not body.get("model") and request.path != "/v1/files":
            return self.bad_request("you must provide a model parameter", "model")
        required = {"/v1/chat/completions": ("messages",), "/v1/completions": ("prompt",),
                    "/v1/embeddings": ("input",), "/v1/audio/transcriptions": ("file",),
                    "/v1/audio/translations": ("file",), "/v1/images/edits": ("image", "prompt"),
                    "/v1/moderations": ("input",), "/v1/files": ("file", "purpose")}
        for name in required.get(request.path, ()):
            if name not in body:
                return self.bad_request(f"Missing required parameter: '{name}'.", name)
        return None

    def _usage(self, b: Behaviour) -> dict[str, Any]:
        return {
            "prompt_tokens": b.prompt_tokens,
            "completion_tokens": b.completion_tokens,
            "total_tokens": b.prompt_tokens + b.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    @staticmethod
    def _wants_usage(body: dict[str, Any], b: Behaviour) -> bool:
        options = body.get("stream_options")
        return b.report_usage and isinstance(options, dict) and options.get("include_usage") is True

    async def _chat(
        self, request: web.Request, rec: RequestRecord, b: Behaviour, body: dict[str, Any]
    ) -> web.StreamResponse:
        cid, created, model = new_id("chatcmpl-"), int(time.time()), body["model"]
        # A forced (or only offered) function is called; a json_schema response_format is answered in kind.
        function = forced_tool(body)
        calls = [tool_call(function, new_id("call_"))] if function is not None else []
        content = None if calls else structured_content(body) or b.content
        finish_reason = "tool_calls" if calls else b.finish_reason
        if not rec.stream:
            message = {"role": "assistant", "content": content, "refusal": None, "annotations": [],
                       **({"tool_calls": calls} if calls else {})}
            obj: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
                "service_tier": "default",
                "system_fingerprint": "fp_fake0001",
            }
            if b.report_usage:
                obj["usage"] = self._usage(b)
            return self.json_response(obj)

        with_usage = self._wants_usage(body, b)

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake0001",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if with_usage:
                obj["usage"] = None  # OpenAI puts a null usage on every chunk when usage was asked for
            return sse(obj)

        frames = [chunk({"role": "assistant", "content": None if calls else "", "refusal": None}, None)]
        if calls:
            frames += [chunk({"tool_calls": [{"index": i, **call}]}, None) for i, call in enumerate(calls)]
        else:
            frames += [chunk({"content": piece}, None) for piece in split_content(content or "", b.chunks)]
        frames.append(chunk({}, finish_reason))
        if with_usage:
            frames[-1 if b.usage_chunk == "last" else len(frames):] = [self._usage_frame(frames[-1], b)]
        frames.append(b"data: [DONE]\n\n")
        return await self.stream(request, rec, b, frames)

    def _usage_frame(self, last: bytes, b: Behaviour) -> bytes:
        """The stream's usage, where b.usage_chunk puts it; `last` is the finish_reason chunk."""
        obj = orjson.loads(last[len(b"data: "):])
        obj["usage"] = self._usage(b)
        if b.usage_chunk == "own":
            obj["choices"] = []
        elif b.usage_chunk == "empty_delta":
            obj["choices"] = [{"index": 0, "delta": {}, "finish_reason": None}]
        return sse(obj)

    async def _completions(
        self, request: web.Request, rec: RequestRecord, b: Behaviour, body: dict[str, Any]
    ) -> web.StreamResponse:
        cid, created, model = new_id("cmpl-"), int(time.time()), body["model"]
        usage = {k: v for k, v in self._usage(b).items() if not k.endswith("_details")}
        if not rec.stream:
            obj: dict[str, Any] = {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{"text": b.content, "index": 0, "logprobs": None, "finish_reason": b.finish_reason}],
            }
            if b.report_usage:
                obj["usage"] = usage
            return self.json_response(obj)

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            head = {"id": cid, "object": "text_completion", "created": created, "model": model}
            return sse({**head, "choices": choices, **extra})

        pieces = split_content(b.content, b.chunks)
        finishes = [None] * (len(pieces) - 1) + [b.finish_reason]
        frames = [
            chunk([{"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}])
            for piece, finish in zip(pieces, finishes)
        ]
        if self._wants_usage(body, b):
            frames.append(chunk([], usage=usage))
        frames.append(b"data: [DONE]\n\n")
        return await self.stream(request, rec, b, frames)

    async def _embeddings(
        self, request: web.Request, rec: RequestRecord, b: Behaviour, body: dict[str, Any]
    ) -> web.StreamResponse:
        inputs = body["input"]
        # A list of strings or of token lists is a batch; a string or one token list is a single input.
        batch = inputs if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else [inputs]
        dims = int(body.get("dimensions") or b.embedding_dims)
        as_base64 = body.get("encoding_format") == "base64"  # the openai SDK asks for base64 by default
        data = []
        for index in range(len(batch)):
            vector = [round(math.sin(index + 1 + i), 6) for i in range(dims)]
            embedding: Any = vector
            if as_base64:  # little-endian float32, the layout the SDK decodes
                embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        obj: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if b.report_usage:
            obj["usage"] = {"prompt_tokens": b.prompt_tokens, "total_tokens": b.prompt_tokens}
        return self.json_response(obj)

    def _response_object(self, rid: str, mid: str, body: dict[str, Any], b: Behaviour, done: bool) -> dict[str, Any]:
        part = {"type": "output_text", "text": b.content, "annotations": [], "logprobs": []}
        item = {"id": mid, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
        usage = {
            "input_tokens": b.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": b.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": b.prompt_tokens + b.completion_tokens,
        }
        return {
            "id": rid,
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed" if done else "in_progress",
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body["model"],
            "output": [item] if done else [],
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage if done and b.report_usage else None,
            "user": None,
            "metadata": {},
        }

    async def _responses(
        self, request: web.Request, rec: RequestRecord, b: Behaviour, body: dict[str, Any]
    ) -> web.StreamResponse:
        rid, mid = new_id("resp_"), new_id("msg_")
        if not rec.stream:
            return self.json_response(self._response_object(rid, mid, body, b, done=True))
        seq = itertools.count()
        at = {"item_id": mid, "output_index": 0, "content_index": 0}
        empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        full = self._response_object(rid, mid, body, b, done=True)
        item = full["output"][0]
        opened = {**item, "status": "in_progress", "content": []}
        started = self._response_object(rid, mid, body, b, done=False)
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": started}),
            ("response.in_progress", {"response": started}),
            ("response.output_item.added", {"output_index": 0, "item": opened}),
            ("response.content_part.added", {**at, "part": empty_part}),
        ]
        events += [
            ("response.output_text.delta", {**at, "delta": piece, "logprobs": []})
            for piece in split_content(b.content, b.chunks)
        ]
        events += [
            ("response.output_text.done", {**at, "text": b.content, "logprobs": []}),
            ("response.content_part.done", {**at, "part": item["content"][0]}),
            ("response.output_item.done", {"output_index": 0, "item": item}),
            ("response.completed", {"response": full}),
        ]
        frames = [sse({"type": name, "sequence_number": next(seq), **data}, event=name) for name, data in events]
        return await self.stream(request, rec, b, frames)

    async def _transcriptions(
        self, request: web.Request, rec: RequestRecord, b: Behaviour, body: dict[str, Any]
    ) -> web.StreamResponse:
        usage = {"type": "tokens", "input_tokens": b.prompt_tokens, "output_tokens": b.completion_tokens,
                 "total_tokens": b.prompt_tokens + b.completion_tokens}
        return self.json_response({"text": b.content, **({"usage": usage} if b.report_usage else {})})

    async def _files(
        self, request: web.Request, rec: RequestRecord, b: Behaviour, body: dict[str, Any]
    ) -> web.StreamResponse:
        upload = body["file"]
        size, filename = (upload["size"], upload["filename"]) if isinstance(upload, dict) else (len(upload), "upload")
        return self.json_response({"id": new_id("file-"), "object": "file", "bytes": size,
                                   "created_at": int(time.time()), "filename": filename, "purpose": body["purpose"],
                                   "status": "processed", "expires_at": None, "status_details": None})

    async def _image_edits(
        self, request: web.Request, rec: RequestRecord, b: Behaviour, body: dict[str, Any]
    ) -> web.StreamResponse:
        png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b.content.encode()).decode()
        return self.json_response({"created": int(time.time()), "data": [{"b64_json": png}]})

    async def _moderations(
        self, request: web.Request, rec: RequestRecord, b: Behaviour, body: dict[str, Any]
    ) -> web.StreamResponse:
        return self.json_response({"id": new_id("modr-"), "model": body["model"],
                                   "results": [{"flagged": False, "categories": {}, "category_scores": {}}]})

    async def _models(
        self, request: web.Request, rec: RequestRecord, b: Behaviour, body: dict[str, Any]
    ) -> web.StreamResponse:
        data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "openai"} for m in b.models]
        return self.json_response({"object": "list", "data": data})


async def start_openai_upstream(
    aiohttp_server: ServerFactory, keys: Iterable[str] = (DEFAULT_OPENAI_KEY,), **behaviour: Any
) -> FakeOpenAI:
    """Start a FakeOpenAI on pytest-aiohttp's ``aiohttp_server`` (stopped by the fixture's teardown)."""
    fake = FakeOpenAI(keys, **behaviour)
    return fake.attach(await aiohttp_server(fake.app))


# -- standalone ------------------------------------------------------------------------------------------------


def build_arg_parser(description: str, default_port: int) -> argparse.ArgumentParser:
    """Command-line options shared by the standalone fakes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=default_port, help="0 picks a free port")
    p.add_argument("--key", action="append", dest="keys", help="accepted API key (repeatable); default: the test key")
    p.add_argument("--chunks", type=int, default=Behaviour.chunks)
    p.add_argument("--content", default=Behaviour.content)
    p.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    p.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between stream events")
    p.add_argument("--record", action="store_true", help="keep request records (served at GET /_fake/requests)")
    return p


def run_standalone(cls: type[FakeUpstream], argv: Sequence[str] | None, default_port: int) -> None:
    """Serve a fake until interrupted."""
    args = build_arg_parser(cls.__doc__ or cls.__name__, default_port).parse_args(argv)
    async def serve() -> None:
        fake = cls(
            args.keys,
            record=args.record,
            chunks=args.chunks,
            content=args.content,
            delay_s=args.delay,
            chunk_delay_s=args.chunk_delay,
        )
        await fake.start(args.host, args.port)
        # The URL only, never a key: this line ends up in benchmark and CI logs.
        print(f"{cls.__name__} listening on {fake.url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await fake.close()

    try:
        import uvloop  # the benchmark's fake must not be its bottleneck

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    run_standalone(FakeOpenAI, None, 9100)
