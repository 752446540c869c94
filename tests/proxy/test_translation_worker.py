"""litellm lives in the translation worker, a child process: the gateway's process never imports it, a killed
worker fails its in-flight calls cleanly and the next call starts a new one, its socket is private and refuses
calls without the secret, streams relay chunk by chunk, and no key shows up in either process's output."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.proxy.translation import protocol
from gateway.store import migrate
from gateway.web.appkeys import TRANSLATOR
from tests.conftest import ADMIN_TOKEN
from tests.factories import ApiUser, make_configuration
from tests.fakes.anthropic_upstream import DEFAULT_ANTHROPIC_KEY, FakeAnthropic, start_anthropic_upstream
from tests.fresh import run_fresh
from tests.leakwatch import new_watched_key
from tests.reliability.processes import Gateway

from .conftest import MESSAGES

ROOT = Path(__file__).resolve().parents[2]
CHAT = {"model": "x", "messages": MESSAGES, "max_tokens": 20}


@pytest.fixture
def translation_pool() -> None:
    """These tests kill and watch workers: their apps start their own, not the session's."""


@pytest.fixture
async def claude(aiohttp_server: Any) -> FakeAnthropic:
    return await start_anthropic_upstream(aiohttp_server)


async def anthropic_config(client: TestClient, user: ApiUser, fake: FakeAnthropic) -> dict[str, Any]:
    return await make_configuration(client, user, provider="anthropic", model="claude-sonnet-4-5",
                                    base_url=fake.url, api_key=DEFAULT_ANTHROPIC_KEY)


def gone(pid: int) -> bool:
    """The process has exited (and been reaped, or is a zombie of its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as status:
            return status.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def translation_workers(pid: int) -> list[int]:
    """The live translation workers whose parent is `pid` (not the model catalog's short-lived child)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[1] == str(pid) and fields[0] != "Z" and protocol.WORKER_MODULE.encode() in argv:
                found.append(int(entry.name))
    return found


async def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


SCRIPT = """
import asyncio, os, sys, uuid
from pathlib import Path
from aiohttp.test_utils import TestServer
from gateway.web.appkeys import TRANSLATOR
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fresh import fresh_gateway

async def main(folder: Path) -> None:
    key = "sk-ant-worker-" + uuid.uuid4().hex
    fake = FakeAnthropic([key], chunks=4)
    server = TestServer(fake.app)
    await server.start_server()
    fake.attach(server)
    async with fresh_gateway(folder, "w") as (client, headers):
        resp = await client.post("/api/llm-configurations", headers=headers, json={
            "name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-5", "api_key": key,
            "base_url": fake.url})
        assert resp.status == 201, await resp.text()
        chat = {"model": "claude", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
        resp = await client.post("/v1/chat/completions", headers=headers, json=chat)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["choices"][0]["message"]["content"] == fake.behaviour.content
        resp = await client.post("/v1/chat/completions", headers=headers, json={**chat, "stream": True})
        text = (await resp.read()).decode()
        assert resp.status == 200 and text.rstrip().endswith("data: [DONE]"), text
        assert fake.requests[-1].stream and fake.requests[-1].api_key == key
        pid = client.server.app[TRANSLATOR].worker_pid
        assert pid is not None and pid != os.getpid()
    await server.close()
    loaded = sorted(name for name in ("litellm", "httpx", "openai", "gateway.proxy.translation.worker",
                                      "gateway.proxy.guarded_http") if name in sys.modules)
    assert not loaded, f"imported in the gateway's process: {loaded}"
    # The app's cleanup stopped the worker.
    assert not Path(f"/proc/{pid}").exists() or open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    print("ok")

asyncio.run(main(Path(sys.argv[1])))
"""


def test_the_gateways_process_serves_anthropic_without_importing_litellm(tmp_path: Path) -> None:
    assert run_fresh(SCRIPT, str(tmp_path), timeout=300).strip().endswith("ok")


async def test_a_killed_worker_fails_its_calls_cleanly_and_the_next_call_starts_a_new_one(
        client: TestClient, user: ApiUser, claude: FakeAnthropic) -> None:
    await anthropic_config(client, user, claude)
    translator = client.server.app[TRANSLATOR]
    resp = await client.post("/v1/chat/completions", headers=user.headers, json=CHAT)
    assert resp.status == 200, await resp.text()
    first = translator.worker_pid
    assert first is not None

    # In flight, whole: the upstream holds the answer while the worker is killed.
    claude.behaviour.hang = True
    seen = len(claude.requests)
    call = asyncio.ensure_future(client.post("/v1/chat/completions", headers=user.headers, json=CHAT))
    await wait_for(lambda: len(claude.requests) > seen)
    os.kill(first, signal.SIGKILL)
    resp = await asyncio.wait_for(call, 30)
    error = (await resp.json())["error"]
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert (error["type"], error["code"]) == ("service_unavailable", "translation_unavailable")
    assert "Traceback" not in error["message"] and DEFAULT_ANTHROPIC_KEY not in await resp.text()
    claude.behaviour.hang = False

    # The next call, right away, starts a new worker and succeeds.
    resp = await client.post("/v1/chat/completions", headers=user.headers, json=CHAT)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["choices"][0]["message"]["content"] == claude.behaviour.content
    second = translator.worker_pid
    assert second is not None and second != first
    await wait_for(lambda: gone(first))

    # In flight, streamed, after its first chunks: the stream ends with an error event, as an upstream cut does.
    claude.behaviour.chunks, claude.behaviour.chunk_delay_s = 6, 0.5
    resp = await client.post("/v1/chat/completions", headers=user.headers, json={**CHAT, "stream": True})
    assert resp.status == 200
    first_line = await resp.content.readline()
    assert first_line.startswith(b"data: {")
    os.kill(second, signal.SIGKILL)
    rest = (await asyncio.wait_for(resp.read(), 30)).decode()
    assert "translation_unavailable" in rest and "[DONE]" not in rest
    claude.behaviour.chunks, claude.behaviour.chunk_delay_s = 3, 0.0
    resp = await client.post("/v1/chat/completions", headers=user.headers, json={**CHAT, "stream": True})
    assert resp.status == 200 and (await resp.read()).rstrip().endswith(b"data: [DONE]")
    assert translator.worker_pid not in (None, first, second)


async def test_the_worker_socket_is_private_and_needs_the_secret(client: TestClient, user: ApiUser,
                                                                 claude: FakeAnthropic) -> None:
    await anthropic_config(client, user, claude)
    translator = client.server.app[TRANSLATOR]
    await translator.ready()
    path = translator.socket_path
    assert path is not None
    folder = os.path.dirname(path)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    call = {"target": {"provider": "anthropic", "wire": "anthropic", "litellm_provider": "anthropic",
                       "base_url": claude.url, "model": "claude-sonnet-4-5", "api_key": DEFAULT_ANTHROPIC_KEY,
                       "name": "x"}, "body": {"messages": MESSAGES, "max_tokens": 5}, "stream": False}
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path)) as http:
        for headers in ({}, {protocol.SECRET_HEADER: "not-the-secret"}, {"Authorization": "Bearer x"}):
            resp = await http.post("http://worker" + protocol.PATH, json=call, headers=headers)
            assert resp.status == 403
    assert claude.requests == []
    resp = await client.post("/v1/chat/completions", headers=user.headers, json=CHAT)
    assert resp.status == 200, await resp.text()  # the gateway's own calls carry it


async def test_streams_relay_chunk_by_chunk_and_calls_run_at_once(client: TestClient, user: ApiUser,
                                                                  claude: FakeAnthropic) -> None:
    await anthropic_config(client, user, claude)
    await client.server.app[TRANSLATOR].ready()
    claude.behaviour.chunks, claude.behaviour.chunk_delay_s = 4, 0.4

    async def one() -> tuple[float, float, str]:
        started = time.monotonic()
        resp = await client.post("/v1/chat/completions", headers=user.headers, json={**CHAT, "stream": True})
        assert resp.status == 200
        first = None
        text = ""
        async for line in resp.content:
            if first is None and b'"content"' in line:
                first = time.monotonic() - started
            text += line.decode()
        assert first is not None
        return first, time.monotonic() - started, text

    results = await asyncio.gather(*(one() for _ in range(4)))
    for first, total, text in results:
        assert text.rstrip().endswith("data: [DONE]")
        assert total >= 1.6 and first < total - 1.0, (first, total)  # the first token did not wait for the rest
    # Four streams of ~2 s each, served at once by one worker: far less than 8 s one after another.
    assert max(total for _, total, _ in results) < 6.0


async def test_no_key_in_either_processs_output(tmp_path: Path, key_ring: str, aiohttp_server: Any) -> None:
    key = new_watched_key(maker="test_no_key_in_either_processs_output")
    claude = await start_anthropic_upstream(aiohttp_server, keys=[key])
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    log = tmp_path / "gateway.log"
    env = {"LLM_GATEWAY_DATABASE_URL": url, "LLM_GATEWAY_ENCRYPTION_KEYS": key_ring,
           "LLM_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN, "LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS": "true",
           "LLM_GATEWAY_LOG_LEVEL": "DEBUG", "LLM_GATEWAY_DATA_DIR": str(tmp_path / "data")}
    gateway = await asyncio.to_thread(Gateway, env, log)
    try:
        async with aiohttp.ClientSession(gateway.url) as http:
            resp = await http.post("/api/admin/users", json={"name": "leak"},
                                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            auth = {"Authorization": f"Bearer {(await resp.json())['token']}"}
            resp = await http.post("/api/llm-configurations", headers=auth, json={
                "name": "x", "provider": "anthropic", "model": "claude-sonnet-4-5", "api_key": key,
                "base_url": claude.url})
            assert resp.status == 201, await resp.text()
            for stream in (False, True):
                resp = await http.post("/v1/chat/completions", headers=auth, json={**CHAT, "stream": stream})
                assert resp.status == 200, await resp.text()
                await resp.read()
            # Error answers that quote the key, an unexpected field, and a killed worker: every path that logs.
            claude.behaviour.status, claude.behaviour.echo_key_in_error = 400, True
            for stream in (False, True):
                resp = await http.post("/v1/chat/completions", headers=auth, json={**CHAT, "stream": stream})
                assert resp.status == 400 and key not in await resp.text()
            claude.behaviour.status, claude.behaviour.echo_key_in_error = 200, False
            resp = await http.post("/v1/chat/completions", headers=auth, json={**CHAT, "fallbacks": ["y"]})
            assert resp.status == 400
            workers = translation_workers(gateway.process.pid)
            assert len(workers) == 1
            claude.behaviour.hang = True
            seen = len(claude.requests)
            call = asyncio.ensure_future(http.post("/v1/chat/completions", headers=auth, json=CHAT))
            await wait_for(lambda: len(claude.requests) > seen)
            os.kill(workers[0], signal.SIGKILL)
            resp = await asyncio.wait_for(call, 30)
            assert resp.status == 503 and key not in await resp.text()
            claude.behaviour.hang = False
            resp = await http.post("/v1/chat/completions", headers=auth, json=CHAT)
            assert resp.status == 200, await resp.text()
    finally:
        await asyncio.to_thread(gateway.stop)
    text = log.read_text()
    assert "translation worker started" in text and "translation worker exited" in text
    assert key not in text  # the watch (tests/leakwatch.py) scans gateway.log too, for every key the test made
