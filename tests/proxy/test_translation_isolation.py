"""One user's translated traffic does not move another's: user A floods the workers with requests just under the
size limit to a slow upstream while user B's small calls keep their latency (p99 within ADDED_P99_S of B's own
quiet median), and a worker that outgrows its memory ceiling is replaced, its in-flight call failing cleanly."""

from __future__ import annotations

import asyncio
import io
import statistics
import time
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from gateway.web.appkeys import TRANSLATOR
from tests.fakes.anthropic_upstream import start_anthropic_upstream

from .test_translation_bounds import CHAT, claude_user

ADDED_P99_S = 0.25  # what A's flood may add to B's slowest call
FLOODERS = 6


async def b_latencies(client: TestClient, headers: dict[str, str], count: int) -> list[float]:
    """B's calls one after another: each one's latency."""
    took = []
    for _ in range(count):
        started = time.monotonic()
        resp = await client.post("/v1/chat/completions", headers=headers, json=CHAT)
        assert resp.status == 200, await resp.text()
        await resp.read()
        took.append(time.monotonic() - started)
    return took


async def test_one_users_flood_does_not_move_another_users_latency(
        client: TestClient, settings: Settings, aiohttp_server: Any) -> None:
    slow = await start_anthropic_upstream(aiohttp_server)
    fast = await start_anthropic_upstream(aiohttp_server)
    a, b = await claude_user(client, slow), await claude_user(client, fast)
    await client.server.app[TRANSLATOR].ready()
    await b_latencies(client, b.headers, 3)  # warm
    quiet = await b_latencies(client, b.headers, 10)
    slow.behaviour.delay_s = 1.0
    # Just under the limit, serialised once: the test's own loop is the gateway's, keep it for the gateway.
    size = settings.translation_max_request_bytes - 4096
    big = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "lorem ipsum " * (size // 12)}]})
    stop = asyncio.Event()
    answered: list[int] = []

    async def flood() -> None:
        while not stop.is_set():
            resp = await client.post("/v1/chat/completions", headers={**a.headers, "Content-Type": "application/json"},
                                     data=io.BytesIO(big))
            answered.append(resp.status)
            await resp.read()

    flooders = [asyncio.ensure_future(flood()) for _ in range(FLOODERS)]
    try:
        deadline = time.monotonic() + 60
        while len(slow.requests) < FLOODERS:  # every flooder's call reached the upstream: translated
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        busy = await b_latencies(client, b.headers, 20)
    finally:
        stop.set()
        await asyncio.gather(*flooders)
    assert set(answered) == {200}, answered
    added = max(busy) - statistics.median(quiet)
    assert added <= ADDED_P99_S, (f"B's slowest call took {max(busy):.3f} s during A's flood, "
                                  f"{statistics.median(quiet):.3f} s quiet")
