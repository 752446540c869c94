"""Upstreams of the caller's own choosing that try to exhaust the gateway: an endless or oversized body, an SSE
event that never ends, a stream that goes silent, a stream that never stops. Each ends with a clear error,
within the limits the settings give (small here), and the gateway goes on serving."""

from __future__ import annotations

import asyncio
import gzip
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.proxy.relay import SSERelay
from tests.factories import ApiUser, make_configuration, make_user
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI
from tests.security.conftest import MakeClient

SMALL = 64 * 1024
MESSAGES = [{"role": "user", "content": "hi"}]
EVENT = b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def hostile(aiohttp_server: Any) -> Callable[[Handler], Awaitable[str]]:
    """Start a real upstream server whose /v1/chat/completions is one hostile handler; returns its base URL."""

    async def start(handler: Handler) -> str:
        async def serve(request: web.Request) -> web.StreamResponse:
            await request.read()
            try:
                return await handler(request)
            except ConnectionError:  # the gateway hung up: what the attack was waiting for
                return web.Response()

        app = web.Application()
        app.router.add_post("/v1/chat/completions", serve)
        server: TestServer = await aiohttp_server(app)
        return str(server.make_url("/v1"))

    return start


async def endless_body(request: web.Request) -> web.StreamResponse:
    """A 200 JSON answer that never ends."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(b'{"id": "x", "choices": [{"message": {"content": "')
    while True:
        await resp.write(b"a" * 16384)


async def huge_declared_body(request: web.Request) -> web.StreamResponse:
    """A JSON answer whose Content-Length says 1 GiB (only the start is ever sent)."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": str(2**30)})
    await resp.prepare(request)
    await resp.write(b'{"id": "x"')
    await asyncio.Event().wait()
    return resp


async def endless_event(request: web.Request) -> web.StreamResponse:
    """One good event, then an event that never ends: no blank line, ever."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(EVENT)
    await resp.write(b'data: {"choices": [{"delta": {"content": "')
    while True:
        await resp.write(b"b" * 16384)


async def silent_stream(request: web.Request) -> web.StreamResponse:
    """One good event, then nothing, connection open."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(EVENT)
    await asyncio.Event().wait()
    return resp


async def never_ending_stream(request: web.Request) -> web.StreamResponse:
    """Good events, every 50 ms, forever."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    while True:
        await resp.write(EVENT)
        await asyncio.sleep(0.05)


async def gateway_with(make_client: MakeClient, base_url: str, **settings: Any) -> tuple[TestClient, ApiUser]:
    client = await make_client(allow_private_base_urls=True, **settings)
    user = await make_user(client)
    await make_configuration(client, user, provider="custom", base_url=base_url, api_key=DEFAULT_OPENAI_KEY)
    return client, user


async def sse_events(resp: Any) -> list[Any]:
    """The data of every event the gateway sent, as JSON."""
    raw = await asyncio.wait_for(resp.read(), 60)
    return [orjson.loads(part[6:]) for part in raw.split(b"\n\n") if part.startswith(b"data: {")]


async def gzip_bomb(request: web.Request) -> web.StreamResponse:
    """A small gzip answer with an honest Content-Length that inflates to 64 times the limit."""
    body = gzip.compress(b'{"id": "x", "choices": [{"message": {"content": "' + b"a" * (64 * SMALL) + b'"}}]}')
    return web.Response(body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})


@pytest.mark.parametrize("handler", [endless_body, huge_declared_body, gzip_bomb])
async def test_an_answer_past_the_body_limit_is_a_502(make_client: MakeClient, hostile: Any,
                                                       handler: Handler) -> None:
    client, user = await gateway_with(make_client, await hostile(handler), max_upstream_body_bytes=SMALL)
    resp = await asyncio.wait_for(
        client.post("/v1/chat/completions", json={"model": "x", "messages": MESSAGES}, headers=user.headers), 60)
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_too_large"


async def test_an_oversized_answer_fails_over(make_client: MakeClient, hostile: Any, fake: FakeOpenAI) -> None:
    client, user = await gateway_with(make_client, await hostile(endless_body), max_upstream_body_bytes=SMALL)
    [hostile_config] = (await (await client.get("/api/llm-configurations", headers=user.headers)).json())["items"]
    good = await make_configuration(client, user, provider="custom", base_url=fake.url, api_key=DEFAULT_OPENAI_KEY)
    resp = await client.patch(f"/api/llm-configurations/{hostile_config['id']}", headers=user.headers,
                              json={"fallback_ids": [good["id"]]})
    assert resp.status == 200, await resp.text()
    resp = await client.post("/v1/chat/completions", json={"model": "x", "messages": MESSAGES},
                             headers=user.headers)
    assert resp.status == 200
    assert resp.headers["X-LLM-Configuration-Id"] == good["id"]
    assert resp.headers["X-LLM-Gateway-Attempts"] == "2"


async def test_an_event_that_never_ends_ends_the_stream_with_an_error(make_client: MakeClient,
                                                                      hostile: Any) -> None:
    client, user = await gateway_with(make_client, await hostile(endless_event), max_event_bytes=SMALL)
    resp = await client.post("/v1/chat/completions", json={"model": "x", "messages": MESSAGES, "stream": True},
                             headers=user.headers)
    assert resp.status == 200
    events = await sse_events(resp)
    assert events[0]["choices"][0]["delta"]["content"] == "hi"
    assert events[-1]["error"]["code"] == "upstream_event_too_large"


async def test_a_silent_stream_ends_with_an_error_event(make_client: MakeClient, hostile: Any) -> None:
    client, user = await gateway_with(make_client, await hostile(silent_stream), upstream_timeout_s=0.5)
    resp = await client.post("/v1/chat/completions", json={"model": "x", "messages": MESSAGES, "stream": True},
                             headers=user.headers)
    events = await sse_events(resp)
    assert events[-1]["error"]["code"] == "upstream_timeout"


async def test_a_stream_longer_than_the_cap_ends_with_an_error_event(make_client: MakeClient,
                                                                     hostile: Any) -> None:
    client, user = await gateway_with(make_client, await hostile(never_ending_stream), stream_max_duration_s=0.5)
    resp = await client.post("/v1/chat/completions", json={"model": "x", "messages": MESSAGES, "stream": True},
                             headers=user.headers)
    events = await sse_events(resp)
    assert len(events) > 1
    assert events[-1]["error"]["code"] == "stream_too_long"
    # The gateway still serves (and the cap is a setting: off by default).
    assert (await client.get("/healthz")).status == 200


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_the_relay_cuts_events_across_any_chunking(size: int) -> None:
    """Separators split between chunks (LF and CRLF), events kept whole, each byte fed once."""
    events = [EVENT, b'data: {"a": 1}\r\n\r\n', b": keep-alive\n\n", b"data: [DONE]\n\n"]
    stream = b"".join(events)
    relay = SSERelay(drop_usage_chunk=False, max_event_bytes=SMALL)
    out = b"".join(relay.feed(stream[i:i + size]) for i in range(0, len(stream), size))
    assert out == stream and relay.saw_done and relay.rest() == b""


def test_the_relay_refuses_an_event_past_its_limit() -> None:
    relay = SSERelay(drop_usage_chunk=False, max_event_bytes=SMALL)
    assert relay.feed(EVENT) == EVENT
    with pytest.raises(Exception) as info:
        for _ in itertools.repeat(None, SMALL):
            relay.feed(b"x" * 1024)
    assert getattr(info.value, "code", None) == "upstream_event_too_large"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_translated_answer_past_the_body_limit_is_a_502(make_client: MakeClient, aiohttp_server: Any,
                                                                stream: bool) -> None:
    # litellm reads Anthropic's answer through the gateway's transport, which cuts it off at the same limit.
    app = web.Application()
    app.router.add_post("/v1/messages", endless_body)
    server: TestServer = await aiohttp_server(app)
    client = await make_client(allow_private_base_urls=True, max_upstream_body_bytes=SMALL)
    user = await make_user(client)
    await make_configuration(client, user, provider="anthropic", model="claude-sonnet-4-5",
                             base_url=str(server.make_url("")).rstrip("/"))
    resp = await asyncio.wait_for(client.post("/v1/chat/completions", headers=user.headers, json={
        "model": "x", "messages": MESSAGES, "stream": stream}), 120)
    assert resp.status == 502, await resp.text()
    assert (await resp.json())["error"]["code"] == "upstream_too_large"
