"""One user's translated traffic does not move another's: user A floods the workers with requests just under the
size limit to a slow upstream while user B's small calls keep their latency (p99 within ADDED_P99_S of B's own
quiet median), and a worker that outgrows its memory ceiling is replaced, its in-flight call failing cleanly."""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import time
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from gateway.web.appkeys import TRANSLATOR
from tests.fakes.anthropic_upstream import start_anthropic_upstream

from .test_translation_bounds import CHAT, claude_user

ADDED_P99_S = 0.25  # what A's flood may add to B's slowest call
FLOODERS = 6
CEILING_HEADROOM_MIB = 60


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


def rss_mib(pid: int) -> int:
    """A process's resident memory in MiB."""
    with open(f"/proc/{pid}/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


async def test_a_worker_over_its_memory_ceiling_is_replaced_and_its_call_fails_cleanly(
        aiohttp_client: Any, settings: Settings, aiohttp_server: Any) -> None:
    claude = await start_anthropic_upstream(aiohttp_server)
    probe = await aiohttp_client(create_app(settings.model_copy(update={"translation_workers": 1})))
    await probe.server.app[TRANSLATOR].ready()
    idle = rss_mib(probe.server.app[TRANSLATOR].worker_pid)
    # The ceiling: what a fresh worker needs, and less than it takes to hold the call below.
    client = await aiohttp_client(create_app(settings.model_copy(update={
        "translation_workers": 1, "translation_worker_max_rss_mb": idle + CEILING_HEADROOM_MIB,
        "translation_max_messages": 100_000})))
    user = await claude_user(client, claude)
    translator = client.server.app[TRANSLATOR]
    await translator.ready()
    first = translator.worker_pid
    assert first is not None
    claude.behaviour.hang = True
    many = {**CHAT, "messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"}
                                 for i in range(40_000)]}
    resp = await asyncio.wait_for(client.post("/v1/chat/completions", data=io.BytesIO(orjson.dumps(many)),
                                              headers={**user.headers, "Content-Type": "application/json"}), 60)
    error = (await resp.json())["error"]
    assert resp.status == 502, error
    assert error["code"] == "translation_worker_failed" and "ceiling" in error["message"], error
    claude.behaviour.hang = False
    resp = await client.post("/v1/chat/completions", headers=user.headers, json=CHAT)
    assert resp.status == 200, await resp.text()
    assert translator.worker_pid not in (None, first)
