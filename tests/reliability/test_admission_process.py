"""Admission control in a real `llm-gateway serve` process, where aiohttp does not cancel a handler whose client
left (its default, unlike the test server): a queued request whose client leaves is still dropped from the queue
and never reaches the upstream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.store import migrate
from tests.conftest import ADMIN_TOKEN
from tests.proxy.conftest import MESSAGES
from tests.proxy.test_admission import HELD, GatedOpenAI
from tests.reliability.processes import Gateway
from tests.waiting import settled


@pytest.fixture
def one_slot_gateway(key_ring: str, tmp_path: Path) -> Iterator[Gateway]:
    """A gateway process on SQLite with one admission slot and a long queue wait."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    migrate.upgrade(database_url)
    gateway = Gateway({"LLM_GATEWAY_DATABASE_URL": database_url, "LLM_GATEWAY_ENCRYPTION_KEYS": key_ring,
                       "LLM_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN, "LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS": "true",
                       "LLM_GATEWAY_DATA_DIR": str(tmp_path / "data"), "LLM_GATEWAY_UPSTREAM_MAX_CONNECTIONS": "1",
                       "LLM_GATEWAY_QUEUE_TIMEOUT_S": "60"}, tmp_path / "gateway.log")
    try:
        yield gateway
    finally:
        gateway.stop()


async def gauge(http: aiohttp.ClientSession, url: str, line: str) -> float | None:
    """The value of one exposition line of /metrics (`name{labels}`), or None."""
    async with http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    for row in text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return None


async def until(http: aiohttp.ClientSession, url: str, line: str, value: float) -> None:
    """Wait (generously) until a metric of the gateway process reads `value`."""
    for _ in range(1000):
        if await gauge(http, url, line) == value:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{line} never became {value}")


async def test_a_client_that_leaves_the_queue_never_reaches_the_upstream(
        aiohttp_server: Any, one_slot_gateway: Gateway) -> None:
    gated = GatedOpenAI()
    gated.attach(await aiohttp_server(gated.app))
    url = one_slot_gateway.url
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/admin/users", json={"name": f"u-{uuid.uuid4().hex[:8]}"},
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
            token = (await resp.json())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{url}/api/llm-configurations", headers=auth, json={
                "name": "gated", "provider": "custom", "model": "gpt-4o-mini", "api_key": next(iter(gated.keys)),
                "base_url": gated.url}) as resp:
            assert resp.status == 201, await resp.text()

        gated.script([HELD])
        held = asyncio.create_task(http.post(f"{url}/v1/chat/completions", headers=auth,
                                             json={"model": "gated", "messages": MESSAGES, "stream": True}))
        assert await settled(lambda: gated.open_requests == 1, timeout=30)
        async with aiohttp.ClientSession() as leaver:  # its own connection, closed when it leaves
            leaving = asyncio.create_task(leaver.post(f"{url}/v1/chat/completions", headers=auth,
                                                      json={"model": "gated", "messages": MESSAGES}))
            await until(http, url, "llm_gateway_queued_requests", 1)
            leaving.cancel()
        await until(http, url, 'llm_gateway_admission_rejections_total{reason="client_left"}', 1)
        assert await gauge(http, url, "llm_gateway_queued_requests") == 0

        gated.gate.set()
        resp = await held
        assert resp.status == 200 and (await resp.read()).endswith(b"data: [DONE]\n\n")
        await until(http, url, "llm_gateway_inflight_requests", 0)
    assert len(gated.requests) == 1  # the held stream alone: the request that left was never sent
