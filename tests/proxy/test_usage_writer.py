"""Attacks on the shared usage writer: raw undecodable bytes in a routing header, an upstream claiming 2**64
tokens, rows the database refuses. After each, another user's normal request is still recorded."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from gateway.background import running
from gateway.store.models import UsageRecord
from gateway.web.appkeys import METRICS, SESSIONMAKER, USAGE
from tests.factories import ApiUser, make_user
from tests.fakes.openai_upstream import FakeOpenAI
from tests.waiting import settled

from .conftest import MESSAGES, openai_config

MAX_TOKENS = 2**31 - 1


async def raw_post(client: TestClient, path: str, headers: list[tuple[bytes, bytes]], body: bytes
                   ) -> tuple[int, bytes]:
    """One HTTP/1.1 POST written byte for byte (a header value no client library would encode)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    lines = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: gateway", b"Connection: close",
             b"Content-Type: application/json", b"Content-Length: " + str(len(body)).encode()]
    lines += [name + b": " + value for name, value in headers]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    await writer.wait_closed()
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload


async def rows_of(client: TestClient, user: ApiUser) -> list[UsageRecord]:
    async with client.server.app[SESSIONMAKER]() as session:
        result = await session.execute(select(UsageRecord).where(UsageRecord.user_id == uuid.UUID(user.id)))
        return list(result.scalars().all())


async def recorded(client: TestClient, user: ApiUser, n: int) -> list[UsageRecord]:
    """The user's usage rows once there are n of them (fails after a generous deadline)."""
    deadline = time.monotonic() + 20
    while True:
        rows = await rows_of(client, user)
        if len(rows) >= n or time.monotonic() > deadline:
            assert len(rows) == n, f"{len(rows)} of {n} usage rows recorded"
            return rows
        await asyncio.sleep(0.05)


async def normal_request(client: TestClient, fake: FakeOpenAI) -> ApiUser:
    """Another user's ordinary request; returns that user once it is answered."""
    other = await make_user(client)
    await openai_config(client, other, fake)
    resp = await client.post("/v1/chat/completions", json={"model": "x", "messages": MESSAGES},
                             headers=other.headers)
    assert resp.status == 200, await resp.text()
    return other


def metric(client: TestClient, name: str) -> float:
    """The sum of a metric's samples in the app's registry."""
    families = text_string_to_metric_families(generate_latest(client.server.app[METRICS].registry).decode())
    return sum(s.value for f in families for s in f.samples if s.name == name)


@pytest.mark.parametrize("header", [b"X-Conversation-Id", b"X-LLM-Configuration"])
async def test_undecodable_header_bytes_are_refused_and_the_writer_goes_on(
        client: TestClient, user: ApiUser, fake: FakeOpenAI, header: bytes) -> None:
    await openai_config(client, user, fake)
    body = orjson.dumps({"model": "x", "messages": MESSAGES})
    auth = (b"Authorization", f"Bearer {user.token}".encode())
    status, payload = await raw_post(client, "/v1/chat/completions", [auth, (header, b"conv-\xff\xfe\x80")], body)
    assert status == 400, payload
    error = orjson.loads(payload)["error"]
    assert error["param"] == header.decode() and error["code"] == "invalid_header"
    other = await normal_request(client, fake)
    await recorded(client, other, 1)
    assert client.server.app[USAGE].dropped == 0


@pytest.mark.parametrize("value", ["x" * 257, "é" * 257, "conv\u2028id", "conv\u202eid"])
async def test_oversized_or_unprintable_conversation_ids_are_refused(
        client: TestClient, user: ApiUser, fake: FakeOpenAI, value: str) -> None:
    await openai_config(client, user, fake)
    body = orjson.dumps({"model": "x", "messages": MESSAGES})
    auth = (b"Authorization", f"Bearer {user.token}".encode())
    status, payload = await raw_post(client, "/v1/chat/completions",
                                     [auth, (b"X-Conversation-Id", value.encode())], body)
    assert status == 400, payload
    assert orjson.loads(payload)["error"]["param"] == "X-Conversation-Id"
    assert not fake.requests


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_claiming_2_to_the_64_tokens_is_clamped(
        client: TestClient, user: ApiUser, fake: FakeOpenAI, stream: bool) -> None:
    # The largest integer JSON parsers keep as one (orjson reads 2**64 itself as a float, clamped alike).
    fake.behaviour.prompt_tokens, fake.behaviour.completion_tokens = 2**64 - 1, -(2**63)
    await openai_config(client, user, fake)
    resp = await client.post("/v1/chat/completions", json={"model": "x", "messages": MESSAGES, "stream": stream},
                             headers=user.headers)
    assert resp.status == 200
    await resp.read()
    [row] = await recorded(client, user, 1)
    assert (row.prompt_tokens, row.completion_tokens) == (MAX_TOKENS, 0)
    fake.behaviour.prompt_tokens, fake.behaviour.completion_tokens = 11, 7
    other = await normal_request(client, fake)
    [row] = await recorded(client, other, 1)
    assert (row.prompt_tokens, row.completion_tokens) == (11, 7)


async def test_rows_the_database_refuses_are_dropped_counted_and_the_rest_written(
        client: TestClient, user: ApiUser, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    """The writer's own guarantee, whatever the door lets through: a bad row costs itself only."""
    await openai_config(client, user, fake)
    writer = client.server.app[USAGE]
    now = time.time()
    user_id = uuid.UUID(user.id)
    # The two rows the issue found: undecodable text, an integer no column holds.
    writer.append(("bad-text", user_id, None, "conv-\udcff", "/chat/completions", 200, 1, False, 0.01, now,
                   (1, 1), None, None))
    writer.append(("bad-number", user_id, None, None, "/chat/completions", 200, 1, False, 0.01, now,
                   (2**64, 1), None, None))
    writer.append(("good", user_id, None, "conv-ok", "/chat/completions", 200, 1, False, 0.01, now,
                   (3, 4), None, None))
    rows = await recorded(client, user, 1)
    assert [(r.conversation_id, r.prompt_tokens) for r in rows] == [("conv-ok", 3)]
    assert writer.dropped == 2
    assert await settled(lambda: metric(client, "llm_gateway_usage_dropped_total") == 2)
    other = await normal_request(client, fake)
    await recorded(client, other, 1)
    assert writer.dropped == 2 and writer.pending == 0
    dropped_lines = [r.getMessage() for r in caplog.records if "usage record dropped" in r.getMessage()]
    assert len(dropped_lines) == 2  # one line each, naming the request, never the row's content
    assert not any("conv-" in line for line in dropped_lines)


async def test_a_crashed_background_task_is_restarted_and_counted(client: TestClient,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    metrics = client.server.app[METRICS]
    runs: list[int] = []
    again = asyncio.Event()

    async def flaky() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("first run fails")
        again.set()
        await asyncio.Event().wait()

    async with running(flaky, name="flaky", crashes=metrics.task_crashes, restart_delay_s=0.01):
        await asyncio.wait_for(again.wait(), 20)
    assert len(runs) == 2
    assert metric(client, "llm_gateway_background_task_crashes_total") == 1
    assert any("background task flaky crashed (RuntimeError)" in r.getMessage() for r in caplog.records)
