"""One user's translated traffic does not move another's (issue #27): user A floods the gateway with ~9.5 MB
translated requests of ~41,000 turns to a slow upstream, as in the report (there, ten of them made other users'
calls take 28-43 s and grew the worker to 4.1 GB), then with requests just under both limits, while user B's small
translated calls keep their latency: B's p95 during each flood stays within ADDED_P95_S of B's quiet median."""

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
from tests.factories import ApiUser, make_configuration, make_user
from tests.fakes.anthropic_upstream import DEFAULT_ANTHROPIC_KEY, FakeAnthropic, start_anthropic_upstream

from .conftest import MESSAGES

CHAT = {"model": "claude", "messages": MESSAGES, "max_tokens": 20}
# What A's flood may add to B's p95 (the second slowest of 20 calls: one stall of a loaded machine, which holds
# every call alike, is not the workers' doing). What remains is the gateway's own reading of A's 9.5 MB bodies
# (0.1-0.6 s measured on a loaded 2-core machine); before the bounds it was 2.6 s (slowest call 5.9 s).
ADDED_P95_S = 1.0
FLOODERS = 6
BIG = 9_500_000  # under the gateway's body limit (10 MiB), over the translated call's (4 MiB)


async def claude_user(client: TestClient, fake: FakeAnthropic) -> ApiUser:
    user = await make_user(client)
    await make_configuration(client, user, name="claude", provider="anthropic", model="claude-sonnet-4-5",
                             base_url=fake.url, api_key=DEFAULT_ANTHROPIC_KEY)
    return user


async def latencies(client: TestClient, headers: dict[str, str], count: int) -> list[float]:
    """Calls one after another: each one's latency."""
    took = []
    for _ in range(count):
        started = time.monotonic()
        resp = await client.post("/v1/chat/completions", headers=headers, json=CHAT)
        assert resp.status == 200, await resp.text()
        await resp.read()
        took.append(time.monotonic() - started)
    return took


async def flooded(client: TestClient, a: ApiUser, b: ApiUser, body: bytes) -> tuple[list[float], list[int]]:
    """B's latencies while A's FLOODERS send `body` again and again; A's answers."""
    stop, started = asyncio.Event(), asyncio.Event()
    answered: list[int] = []

    async def flood() -> None:
        while not stop.is_set():
            resp = await client.post("/v1/chat/completions", data=io.BytesIO(body),
                                     headers={**a.headers, "Content-Type": "application/json"})
            answered.append(resp.status)
            started.set()
            await resp.read()
            await asyncio.sleep(0.05)  # a client that retries at once, not a busy loop of the test's own

    flooders = [asyncio.ensure_future(flood()) for _ in range(FLOODERS)]
    try:
        await asyncio.wait_for(started.wait(), 60)
        return await latencies(client, b.headers, 20), answered
    finally:
        stop.set()
        await asyncio.gather(*flooders)


def turns(count: int, words: int) -> list[dict[str, str]]:
    """A conversation of `count` turns of `words` words each."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": "lorem ipsum " * (words // 2)}
            for i in range(count)]


async def test_one_users_big_requests_do_not_move_another_users_latency(
        client: TestClient, settings: Settings, aiohttp_server: Any) -> None:
    slow = await start_anthropic_upstream(aiohttp_server)
    fast = await start_anthropic_upstream(aiohttp_server)
    a, b = await claude_user(client, slow), await claude_user(client, fast)
    await client.server.app[TRANSLATOR].ready()
    await latencies(client, b.headers, 3)  # warm
    quiet = statistics.median(await latencies(client, b.headers, 10))
    slow.behaviour.delay_s = 1.0
    # Serialised once: the test's loop is the gateway's, keep it for the gateway.
    over = orjson.dumps({**CHAT, "messages": turns(BIG // 230, 32)})
    busy, answered = await flooded(client, a, b, over)
    p95 = sorted(busy)[-2]
    assert p95 - quiet <= ADDED_P95_S, (f"B's calls during A's flood: p95 {p95:.3f} s, slowest {max(busy):.3f} s; "
                                        f"quiet median {quiet:.3f} s; A's answers {sorted(set(answered))}")
    # Refused before anything is sent; which bound says so first depends on the body phase: the user's body bytes
    # in flight (429), or for a body whose messages the gateway left unparsed the call's size (413), else the
    # message count (400).
    assert set(answered) <= {400, 413, 429} and slow.requests == [], sorted(set(answered))
    # Just under both limits: A's calls are translated and held by the slow upstream, B's still go through.
    count = settings.translation_max_messages - 1
    under = orjson.dumps({**CHAT, "messages": turns(count, settings.translation_max_request_bytes // count // 7)})
    assert len(under) < settings.translation_max_request_bytes
    busy, answered = await flooded(client, a, b, under)
    p95 = sorted(busy)[-2]
    assert p95 - quiet <= ADDED_P95_S, (f"B's calls during A's flood: p95 {p95:.3f} s, slowest {max(busy):.3f} s; "
                                        f"quiet median {quiet:.3f} s")
    # Some are translated and held by the slow upstream; the rest meet A's share of the workers or A's body bytes
    # in flight (429), never an error of the gateway's.
    assert 200 in answered and set(answered) <= {200, 429} and slow.requests, sorted(set(answered))
