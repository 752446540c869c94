"""The server as `serve` runs it (a real process): a client that never finishes its request head is cut off
after CLIENT_HEADER_TIMEOUT_S (slowloris), and a client that leaves a stream releases its upstream at once,
even while the upstream is silent."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.cli.test_cli import _env, free_port, wait_healthy
from tests.cli.test_serve_workers import SRC
from tests.conftest import ADMIN_TOKEN
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI
from tests.waiting import settled

from .conftest import MESSAGES


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    """`llm-gateway serve` on SQLite with a 1 s header timeout; its base URL."""
    port = free_port()
    env = _env(PYTHONPATH=SRC, LLM_GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN, LLM_GATEWAY_CLIENT_HEADER_TIMEOUT_S="1",
               LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS="true")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


async def closed_by_server(url: str, trickle: bytes) -> bool:
    """Open a connection, send `trickle` a byte at a time (never a whole request head); True once the server
    closes it (within a generous deadline, far past the 1 s timeout and far short of aiohttp's own 75 s)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        async with asyncio.timeout(30):
            for byte in trickle:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)  # the attack's own pace, not a wait for the gateway
            return await reader.read() == b""
    except ConnectionError:  # closed while the attack was still writing
        return True
    except TimeoutError:
        return False
    finally:
        writer.close()


@pytest.mark.parametrize("trickle", [b"", b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-A: "])
async def test_a_request_head_that_never_ends_is_cut_off(gateway: str, trickle: bytes) -> None:
    assert await closed_by_server(gateway, trickle)
    async with aiohttp.ClientSession() as http, http.get(f"{gateway}/healthz") as resp:
        assert resp.status == 200  # the gateway itself is fine


async def test_a_client_leaving_a_silent_stream_releases_the_upstream(gateway: str, fake: FakeOpenAI) -> None:
    fake.behaviour.chunk_delay_s = 120.0  # the upstream goes silent after its first event
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway}/api/admin/users", json={"name": "leaver"}, headers=admin) as resp:
            assert resp.status == 201
            headers = {"Authorization": f"Bearer {(await resp.json())['token']}"}
        async with http.post(f"{gateway}/api/llm-configurations", headers=headers,
                             json={"name": "c", "provider": "custom", "model": "gpt-4o-mini", "base_url": fake.url,
                                   "api_key": DEFAULT_OPENAI_KEY}) as resp:
            assert resp.status == 201, await resp.text()
        resp = await http.post(f"{gateway}/v1/chat/completions", headers=headers,
                               json={"model": "x", "messages": MESSAGES, "stream": True})
        assert resp.status == 200
        await resp.content.readuntil(b"\n\n")
        resp.close()  # the client leaves while the upstream says nothing
    assert await settled(lambda: fake.last_request.finished_at is not None, timeout=30)
    assert fake.last_request.client_disconnected and not fake.last_request.completed
