"""A translated call is bounded before it reaches a worker: its size (413) and its number of messages (400), no
remote URL in a message part (400 naming the field; litellm would fetch it outside the gateway's URL policy);
while running, by its deadline (504) and by its caller's share of the workers (429); and the worker itself gets
no proxy variable and no gateway secret in its environment."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.proxy.translation.pool import WorkerPool
from gateway.settings import Settings
from gateway.web.appkeys import TRANSLATOR
from tests.factories import ApiUser, make_configuration, make_user
from tests.fakes.anthropic_upstream import DEFAULT_ANTHROPIC_KEY, FakeAnthropic, start_anthropic_upstream

from .conftest import MESSAGES

CHAT = {"model": "claude", "messages": MESSAGES, "max_tokens": 20}
PIXEL = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")).decode()


async def gateway_with(aiohttp_client: Any, settings: Settings, pool: WorkerPool | None, **overrides: Any
                       ) -> TestClient:
    """The gateway with some settings changed (the session's workers when the changes leave theirs alone)."""
    app = create_app(settings.model_copy(update=overrides), translation_pool=pool)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def claude_user(client: TestClient, fake: FakeAnthropic, name: str = "claude") -> ApiUser:
    user = await make_user(client)
    await make_configuration(client, user, name=name, provider="anthropic", model="claude-sonnet-4-5",
                             base_url=fake.url, api_key=DEFAULT_ANTHROPIC_KEY)
    return user


@pytest.fixture
async def claude(aiohttp_server: Any) -> FakeAnthropic:
    return await start_anthropic_upstream(aiohttp_server)


@pytest.fixture
async def image_host(aiohttp_server: Any) -> tuple[str, list[str]]:
    """A web server with an image on it (reachable from the gateway's host), and the paths asked of it."""
    asked: list[str] = []

    async def image(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response(body=base64.b64decode(PIXEL), content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", image)
    server = await aiohttp_server(app)
    return str(server.make_url("/")), asked


async def test_a_request_over_the_size_limit_is_413_and_sends_nothing(
        aiohttp_client: Any, settings: Settings, translation_pool: WorkerPool, claude: FakeAnthropic) -> None:
    client = await gateway_with(aiohttp_client, settings, translation_pool, translation_max_request_bytes=64 * 1024)
    user = await claude_user(client, claude)
    big = [{"role": "user", "content": "x" * (80 * 1024)}]
    for stream in (False, True):
        resp = await client.post("/v1/chat/completions", headers=user.headers,
                                 json={**CHAT, "messages": big, "stream": stream})
        error = (await resp.json())["error"]
        assert resp.status == 413, error
        assert error["code"] == "translation_request_too_large" and "65536 bytes" in error["message"]
        assert "TRANSLATION_MAX_REQUEST_BYTES" in error["message"]
    assert claude.requests == []
    assert client.server.app[TRANSLATOR].worker_pids == []  # refused before any worker was needed
    resp = await client.post("/v1/chat/completions", headers=user.headers, json=CHAT)
    assert resp.status == 200, await resp.text()


async def test_too_many_messages_is_400_naming_the_field(
        aiohttp_client: Any, settings: Settings, translation_pool: WorkerPool, claude: FakeAnthropic) -> None:
    client = await gateway_with(aiohttp_client, settings, translation_pool, translation_max_messages=5)
    user = await claude_user(client, claude)
    resp = await client.post("/v1/chat/completions", headers=user.headers, json={**CHAT, "messages": MESSAGES * 6})
    error = (await resp.json())["error"]
    assert resp.status == 400, error
    assert (error["param"], error["code"]) == ("messages", "too_many_messages") and "at most 5" in error["message"]
    assert claude.requests == []


@pytest.mark.parametrize(("part", "field"), [
    ({"type": "image_url", "image_url": {"url": "{host}cat.png"}}, "messages[0].content[1].image_url.url"),
    ({"type": "image_url", "image_url": "{host}cat.png"}, "messages[0].content[1].image_url"),
    ({"type": "file", "file": {"file_id": "{host}report.pdf"}}, "messages[0].content[1].file.file_id"),
])
# A body of 128 KiB or more is parsed off the gateway's loop and its messages stay JSON text there: the worker
# asks the same rule before litellm sees the call.
@pytest.mark.parametrize("padding", [0, 200_000], ids=["small-body", "big-body"])
async def test_a_remote_url_in_a_message_part_is_refused_before_anything_is_fetched(
        client: TestClient, claude: FakeAnthropic, image_host: tuple[str, list[str]], part: dict[str, Any],
        field: str, padding: int) -> None:
    host, asked = image_host
    user = await claude_user(client, claude)
    part = {k: ({kk: vv.replace("{host}", host) for kk, vv in v.items()} if isinstance(v, dict)
                else v.replace("{host}", host)) for k, v in part.items()}
    messages = [{"role": "user", "content": [{"type": "text", "text": f"what is at {host}cat.png?" + " " * padding},
                                             part]}]
    for stream in (False, True):
        resp = await client.post("/v1/chat/completions", headers=user.headers,
                                 json={**CHAT, "messages": messages, "stream": stream})
        error = (await resp.json())["error"]
        assert resp.status == 400, error
        assert (error["param"], error["code"]) == (field, "remote_url_not_supported")
    await asyncio.sleep(0.2)
    assert asked == [] and claude.requests == []


async def test_a_data_url_image_still_works(client: TestClient, claude: FakeAnthropic) -> None:
    user = await claude_user(client, claude)
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "see https://example.com for what this is"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}]}]
    resp = await client.post("/v1/chat/completions", headers=user.headers, json={**CHAT, "messages": messages})
    assert resp.status == 200, await resp.text()
    sent = claude.requests[-1].body["messages"][0]["content"]
    assert {"type": "base64", "media_type": "image/png", "data": PIXEL} in [c.get("source") for c in sent]


async def test_a_call_past_its_deadline_is_504_and_frees_its_worker(
        aiohttp_client: Any, settings: Settings, translation_pool: WorkerPool, claude: FakeAnthropic) -> None:
    client = await gateway_with(aiohttp_client, settings, translation_pool, translation_deadline_s=1.5)
    user = await claude_user(client, claude)
    await client.server.app[TRANSLATOR].ready()
    claude.behaviour.hang = True
    for stream in (False, True):
        started = time.monotonic()
        resp = await client.post("/v1/chat/completions", headers=user.headers, json={**CHAT, "stream": stream})
        error = (await resp.json())["error"]
        assert resp.status == 504, error
        assert error["code"] == "translation_deadline_exceeded" and "1.5 s" in error["message"]
        assert 1.4 < time.monotonic() - started < 10
    # Leaving the call cancelled it in the worker: the upstream saw its client go.
    deadline = time.monotonic() + 10
    while not all(r.client_disconnected for r in claude.requests):
        assert time.monotonic() < deadline, [r.client_disconnected for r in claude.requests]
        await asyncio.sleep(0.05)
    claude.behaviour.hang = False
    resp = await client.post("/v1/chat/completions", headers=user.headers, json=CHAT)
    assert resp.status == 200, await resp.text()


async def test_a_callers_share_of_the_workers_is_bounded_and_others_still_get_through(
        aiohttp_client: Any, settings: Settings, translation_pool: WorkerPool, aiohttp_server: Any) -> None:
    slow = await start_anthropic_upstream(aiohttp_server)
    fast = await start_anthropic_upstream(aiohttp_server)
    # Two workers of two calls each, half for any one caller: two calls in flight at most.
    client = await gateway_with(aiohttp_client, settings, translation_pool, translation_workers=2,
                                translation_worker_calls=2, translation_user_share=0.5)
    greedy, other = await claude_user(client, slow), await claude_user(client, fast)
    await client.server.app[TRANSLATOR].ready()
    slow.behaviour.hang = True
    held = [asyncio.ensure_future(client.post("/v1/chat/completions", headers=greedy.headers, json=CHAT))
            for _ in range(2)]
    deadline = time.monotonic() + 30
    while len(slow.requests) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    resp = await client.post("/v1/chat/completions", headers=greedy.headers, json=CHAT)
    error = (await resp.json())["error"]
    assert resp.status == 429, error
    assert error["code"] == "translation_share_exceeded" and "at most 2" in error["message"]
    assert resp.headers["Retry-After"] == "1"
    assert len(slow.requests) == 2  # the third never reached a worker
    for _ in range(3):
        started = time.monotonic()
        resp = await client.post("/v1/chat/completions", headers=other.headers, json=CHAT)
        assert resp.status == 200, await resp.text()
        assert time.monotonic() - started < 2.0
    slow.behaviour.hang = False
    for call in held:
        call.cancel()
    await asyncio.gather(*held, return_exceptions=True)


async def test_the_worker_gets_a_minimal_environment(
        aiohttp_client: Any, settings: Settings, key_ring: str, claude: FakeAnthropic,
        monkeypatch: pytest.MonkeyPatch) -> None:
    planted = {"HTTP_PROXY": "http://127.0.0.1:9/", "HTTPS_PROXY": "http://127.0.0.1:9/",
               "https_proxy": "http://127.0.0.1:9/", "ALL_PROXY": "socks5://127.0.0.1:9",
               "NO_PROXY": "nothing", "LLM_GATEWAY_ENCRYPTION_KEYS": key_ring,
               "LLM_GATEWAY_ADMIN_TOKEN": "planted-admin-token", "LLM_GATEWAY_DATABASE_URL": settings.database_url,
               "AWS_SECRET_ACCESS_KEY": "planted-aws-secret"}
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    client = await gateway_with(aiohttp_client, settings, None)  # its own workers, started under this environment
    user = await claude_user(client, claude)
    resp = await client.post("/v1/chat/completions", headers=user.headers, json=CHAT)
    assert resp.status == 200, await resp.text()
    [pid, *_] = client.server.app[TRANSLATOR].worker_pids
    raw = await asyncio.to_thread(Path(f"/proc/{pid}/environ").read_bytes)
    environment = dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)
    assert not set(planted) & set(environment), sorted(set(planted) & set(environment))
    assert not [name for name in environment if name.startswith("LLM_GATEWAY_") or "proxy" in name.lower()]
    assert environment["PATH"] == os.environ["PATH"] and environment["HOME"] == os.environ["HOME"]
    assert environment["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert environment["PYTHONPATH"].split(os.pathsep)[0].endswith("src")
