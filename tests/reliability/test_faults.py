"""Upstream faults: refused, reset, hanging, garbage. Each gives the client a clear error in time, and leaves
no task running and no upstream connection checked out. (Failover on status codes, the stream's error event
after its first byte and the cancel on a client's disconnect are in tests/proxy/.)"""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.web.appkeys import USAGE
from tests.factories import ApiUser
from tests.fakes.openai_upstream import FakeOpenAI, start_openai_upstream
from tests.proxy.conftest import MESSAGES, openai_config
from tests.proxy.test_failover import refused_url
from tests.reliability.conftest import Baseline
from tests.waiting import settled


async def warmed(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> Baseline:
    """One good request first, so caches, the usage writer and the pool exist before the baseline."""
    resp = await client.post("/v1/chat/completions", headers=user.headers, json={"model": "x", "messages": MESSAGES})
    assert resp.status == 200
    await resp.read()
    usage, probe = client.server.app[USAGE], Baseline(client)
    assert await settled(lambda: usage.pending == 0 and probe.acquired() == 0 and fake.last_request.completed)
    return Baseline(client)


FAULTS = [
    # (fake behaviour, stream, status, error code, words of the message)
    pytest.param({"hang": True}, False, 504, "upstream_timeout", "did not answer in time", id="hang"),
    pytest.param({"hang": True}, True, 504, "upstream_timeout", "did not answer in time", id="hang-stream"),
    pytest.param({"delay_s": 120.0}, False, 504, "upstream_timeout", "did not answer in time", id="slow"),
    pytest.param({"garbage": "reset"}, False, 502, "upstream_connection_error", "failed", id="reset"),
    pytest.param({"garbage": "truncated_sse"}, False, 502, None, "", id="truncated-json"),
    # Found by this suite and fixed: a 200 whose body is not JSON, or whose stream's events are not, was relayed.
    pytest.param({"garbage": "non_json"}, False, 502, "upstream_invalid_response", "not valid JSON", id="non-json"),
    pytest.param({"garbage": "non_json"}, True, 502, "upstream_invalid_response", "not valid server-sent",
                 id="non-json-stream"),
]


@pytest.mark.parametrize(("behaviour", "stream", "status", "code", "words"), FAULTS)
async def test_fault_gives_a_clear_error_in_time_and_leaks_nothing(
    client: TestClient, user: ApiUser, fake: FakeOpenAI, behaviour: dict[str, Any], stream: bool, status: int,
    code: str | None, words: str,
) -> None:
    await openai_config(client, user, fake)
    baseline = await warmed(client, user, fake)
    for name, value in behaviour.items():
        setattr(fake.behaviour, name, value)
    started = time.monotonic()
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "x", "messages": MESSAGES, "stream": stream})
    body = await resp.text()
    elapsed = time.monotonic() - started
    assert resp.status == status, body
    error = (await resp.json())["error"]
    assert set(error) == {"message", "type", "code", "param"}
    if code:
        assert error["code"] == code
    assert words in error["message"]
    assert elapsed < 60  # the configured 2 s (however slow the machine), not the fake's hang or 120 s
    assert await baseline.settled(), (baseline.task_count(), baseline.tasks, baseline.acquired())


async def test_refused_connection_is_502_and_leaks_nothing(client: TestClient, user: ApiUser, fake: FakeOpenAI
                                                           ) -> None:
    good = await openai_config(client, user, fake, name="good")
    baseline = await warmed(client, user, fake)
    await openai_config(client, user, fake, name="dead", base_url=refused_url(), is_default=False)
    for stream in (False, True):
        resp = await client.post("/v1/chat/completions", headers=user.headers,
                                 json={"model": "dead", "messages": MESSAGES, "stream": stream})
        assert resp.status == 502
        assert (await resp.json())["error"]["code"] == "upstream_unreachable"
    assert await baseline.settled()
    assert good["id"]


async def test_a_hanging_upstream_fails_over_within_the_timeout(client: TestClient, user: ApiUser, fake: FakeOpenAI,
                                                                aiohttp_server: Any) -> None:
    backup = await start_openai_upstream(aiohttp_server, content="from the backup")
    fallback = await openai_config(client, user, backup, name="backup", is_default=False)
    await openai_config(client, user, fake, name="primary", is_default=True, fallback_ids=[fallback["id"]])
    baseline = await warmed(client, user, fake)
    fake.behaviour.hang = True
    for stream in (False, True):
        started = time.monotonic()
        resp = await client.post("/v1/chat/completions", headers=user.headers,
                                 json={"model": "x", "messages": MESSAGES, "stream": stream})
        body = await resp.text()
        assert resp.status == 200 and ("from the backup" in body or "[DONE]" in body)
        assert resp.headers["X-LLM-Configuration-Id"] == fallback["id"]
        assert time.monotonic() - started < 60  # the primary never answers: only its timeout moves on
    assert await baseline.settled()


async def test_truncated_stream_before_its_end_is_an_error_event_and_leaks_nothing(
    client: TestClient, user: ApiUser, fake: FakeOpenAI
) -> None:
    await openai_config(client, user, fake)
    baseline = await warmed(client, user, fake)
    fake.behaviour.chunks = 6
    for garbage in ("truncated_sse", "reset"):
        fake.behaviour.garbage = garbage
        resp = await client.post("/v1/chat/completions", headers=user.headers,
                                 json={"model": "x", "messages": MESSAGES, "stream": True})
        text = await resp.text()
        assert resp.status == 200  # the first events were already relayed
        assert '"error"' in text.rsplit("data:", 1)[-1] or '"error"' in text.rsplit("data:", 2)[-2], text[-300:]
        assert "data: [DONE]" not in text.split('"error"')[0][-50:]
    assert await baseline.settled()


async def test_client_leaving_mid_stream_gives_back_the_connection(client: TestClient, user: ApiUser,
                                                                   fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    baseline = await warmed(client, user, fake)
    fake.behaviour.chunk_delay_s = 0.1
    fake.behaviour.chunks = 50
    for _ in range(5):
        resp = await client.post("/v1/chat/completions", headers=user.headers,
                                 json={"model": "x", "messages": MESSAGES, "stream": True})
        await resp.content.readuntil(b"\n\n")
        assert baseline.acquired() == 1
        resp.close()
    assert await baseline.settled(), (baseline.task_count(), baseline.tasks, baseline.acquired())
    assert all(r.client_disconnected and not r.completed for r in fake.requests[1:])
    metrics = await (await client.get("/metrics")).text()  # what an operator (and benchmarks/soak.py) sees
    assert 'llm_gateway_upstream_connections{state="in_use"} 0.0' in metrics
    assert "llm_gateway_asyncio_tasks " in metrics and "process_resident_memory_bytes " in metrics
