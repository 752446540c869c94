"""Admission control: a bounded wait for a slot (503 gateway_overloaded), a per-user cap (429), queued requests
whose client left never reach the upstream, /readyz says overloaded while saturated, and /metrics counts it all.

The fake upstream holds requests scripted with `hang` until the test opens its gate, so a slot stays taken for
exactly as long as the test needs: no timing, only conditions.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.settings import Settings
from tests.factories import ApiUser, make_user
from tests.fakes.openai_upstream import FakeOpenAI
from tests.proxy.conftest import MESSAGES, openai_config
from tests.waiting import settled

HELD = {"hang": True}


class GatedOpenAI(FakeOpenAI):
    """A FakeOpenAI whose `hang` requests wait for `gate`, then answer as usual (the gate opens on shutdown)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.app.on_shutdown.append(self._open)

    async def _open(self, _app: web.Application) -> None:
        self.gate.set()

    async def pause(self, seconds: float | None) -> None:
        """Hold a hanging request until the gate opens."""
        if seconds is None:
            await self.gate.wait()
            return
        await super().pause(seconds)


@pytest.fixture
def queue_timeout_s() -> float:
    """Long enough never to run out while a test waits on a condition (a test that wants it to, shortens it)."""
    return 60.0


@pytest.fixture
def settings(settings: Settings, queue_timeout_s: float) -> Settings:
    """One slot per process and at most two requests per user at once."""
    return settings.model_copy(update={"upstream_max_connections": 1, "queue_timeout_s": queue_timeout_s,
                                       "max_concurrent_requests_per_user": 2})


@pytest.fixture
async def gated(aiohttp_server: Any) -> GatedOpenAI:
    """The fake upstream with a gate."""
    fake = GatedOpenAI()
    return fake.attach(await aiohttp_server(fake.app))


@pytest.fixture
async def caller(client: TestClient, user: ApiUser, gated: GatedOpenAI) -> ApiUser:
    """`user`, with a default configuration on the gated fake."""
    await openai_config(client, user, gated)
    return user


def chat(client: TestClient, user: ApiUser, *, stream: bool = False) -> Any:
    """POST /v1/chat/completions as `user` (awaitable: the response)."""
    return client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {user.token}"},
                       json={"model": "any", "messages": MESSAGES, "stream": stream})


async def metrics(client: TestClient) -> dict[str, float]:
    """Every sample of /metrics by name and labels, e.g. `llm_gateway_admission_rejections_total{reason=...}`."""
    text = await (await client.get("/metrics")).text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


async def until_metric(client: TestClient, name: str, value: float) -> None:
    """Wait (generously) until a metric reads `value`."""
    last: list[float | None] = [None]

    async def probe() -> bool:
        last[0] = (await metrics(client)).get(name)
        return last[0] == value

    for _ in range(500):
        if await probe():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} is {last[0]}, not {value}")


async def holding(client: TestClient, user: ApiUser, gated: GatedOpenAI) -> asyncio.Task[Any]:
    """A stream of `user` that holds the process' one slot at the upstream until the gate opens."""
    gated.script([HELD])
    held = asyncio.create_task(chat(client, user, stream=True))
    assert await settled(lambda: gated.open_requests == 1, timeout=30)
    return held


async def finished(task: asyncio.Task[Any]) -> tuple[int, bytes]:
    """Status and body of a request task."""
    resp = await task
    return resp.status, await resp.read()


@pytest.mark.parametrize("queue_timeout_s", [0.2])
async def test_full_process_answers_503_with_retry_after_after_the_queue_timeout(
        client: TestClient, caller: ApiUser, gated: GatedOpenAI) -> None:
    held = await holding(client, caller, gated)
    assert (await metrics(client))["llm_gateway_open_streams"] == 1

    resp = await chat(client, caller)
    body = await resp.json()
    assert resp.status == 503
    assert body["error"]["code"] == "gateway_overloaded" and body["error"]["type"] == "service_unavailable"
    assert resp.headers["Retry-After"] == "1"
    assert len(gated.requests) == 1  # the rejected request never went upstream

    gated.gate.set()
    status, streamed = await finished(held)
    assert status == 200 and streamed.endswith(b"data: [DONE]\n\n")
    counts = await metrics(client)
    assert counts["llm_gateway_admission_rejections_total{reason=overloaded}"] == 1
    assert counts["llm_gateway_queue_wait_seconds_count"] == 2
    assert counts["llm_gateway_inflight_requests"] == 0 and counts["llm_gateway_open_streams"] == 0


async def test_per_user_cap_answers_429_while_another_user_is_served(
        client: TestClient, caller: ApiUser, gated: GatedOpenAI, settings: Settings) -> None:
    other = await make_user(client)
    await openai_config(client, other, gated)
    gated.script([HELD, HELD])
    first = asyncio.create_task(chat(client, caller, stream=True))  # takes the slot
    assert await settled(lambda: gated.open_requests == 1, timeout=30)
    second = asyncio.create_task(chat(client, caller, stream=True))  # the user's second: queued
    await until_metric(client, "llm_gateway_queued_requests", 1)

    resp = await chat(client, caller)  # the user's third: over the cap of 2
    body = await resp.json()
    assert resp.status == 429
    assert body["error"]["code"] == "too_many_concurrent_requests" and body["error"]["type"] == "rate_limit_error"
    assert "at most 2 per user" in body["error"]["message"]
    assert resp.headers["Retry-After"]

    served = asyncio.create_task(chat(client, other))  # another user still gets in line, and is served
    await until_metric(client, "llm_gateway_queued_requests", 2)
    gated.gate.set()
    assert (await finished(first))[0] == 200
    assert (await finished(second))[0] == 200
    status, answer = await finished(served)
    assert status == 200 and b"Hello from the fake upstream." in answer
    assert (await metrics(client))["llm_gateway_admission_rejections_total{reason=user_limit}"] == 1


async def test_a_queued_request_whose_client_left_never_reaches_the_upstream(
        client: TestClient, caller: ApiUser, gated: GatedOpenAI) -> None:
    held = await holding(client, caller, gated)
    async with aiohttp.ClientSession() as http:  # its own connection, so leaving closes it
        leaving = asyncio.create_task(http.post(
            client.make_url("/v1/chat/completions"), headers={"Authorization": f"Bearer {caller.token}"},
            json={"model": "any", "messages": MESSAGES}))
        await until_metric(client, "llm_gateway_queued_requests", 1)
        leaving.cancel()
    await until_metric(client, "llm_gateway_admission_rejections_total{reason=client_left}", 1)
    assert (await metrics(client))["llm_gateway_queued_requests"] == 0

    gated.gate.set()
    assert (await finished(held))[0] == 200
    await until_metric(client, "llm_gateway_inflight_requests", 0)
    assert len(gated.requests) == 1  # only the held stream: the one that left was dropped from the queue


async def test_readyz_reports_overloaded_while_saturated_and_recovers(
        client: TestClient, caller: ApiUser, gated: GatedOpenAI) -> None:
    held = await holding(client, caller, gated)
    assert (await client.get("/readyz")).status == 200  # every slot taken, nobody waiting yet
    queued = asyncio.create_task(chat(client, caller))
    await until_metric(client, "llm_gateway_queued_requests", 1)

    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503 and resp.headers["Retry-After"]
    assert body["error"]["code"] == "gateway_overloaded"
    assert "1 requests queued" in body["error"]["message"]
    assert (await client.get("/healthz")).status == 200
    counts = await metrics(client)
    assert counts["llm_gateway_inflight_requests"] == 1 and counts["llm_gateway_open_streams"] == 1
    assert counts["llm_gateway_admission_limit"] == 1

    gated.gate.set()
    assert (await finished(held))[0] == 200
    assert (await finished(queued))[0] == 200
    resp = await client.get("/readyz")
    assert resp.status == 200 and (await resp.json())["status"] == "ready"
    assert (await metrics(client))["llm_gateway_queued_requests"] == 0


@pytest.fixture
def low_file_limit() -> Iterator[int]:
    """This process' soft RLIMIT_NOFILE lowered to 512 (restored afterwards); yields the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 512:  # unlimited: the gateway leaves the soft limit alone
        pytest.fail(f"the hard open-file limit ({hard}) gives this test nothing to raise to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_start_up_raises_the_open_file_limit_and_says_so(
        aiohttp_client: Any, settings: Settings, low_file_limit: int, caplog: pytest.LogCaptureFixture) -> None:
    await aiohttp_client(create_app(settings))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == low_file_limit
    assert any(r.name == "gateway.admission" and r.levelno == logging.INFO and "from 512 to" in r.getMessage()
               for r in caplog.records)
