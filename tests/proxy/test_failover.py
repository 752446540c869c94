"""Failover along the attempt chain, cooldown of failing configurations, and the error when all fail."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from gateway.web.appkeys import COOLDOWNS
from tests.factories import ApiUser
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI, start_openai_upstream
from tests.waiting import settled

from .conftest import MESSAGES, openai_config, sdk

# Short enough to keep the module quick, long enough that a loaded 2-core CI still sees a cooldown before it ends
# and an answer before the timeout. Waits for a cooldown's end watch the gateway's state, never a clock.
COOLDOWN_S, TIMEOUT_S = 2.0, 3.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Short timeouts and cooldowns so the tests run quickly."""
    return settings.model_copy(update={"upstream_timeout_s": TIMEOUT_S, "cooldown_s": COOLDOWN_S})


async def cooled_down(client: TestClient, configuration_id: str) -> None:
    """Until the configuration's cooldown is over (the next request may probe it)."""
    cooldowns = client.server.app[COOLDOWNS]
    assert await settled(lambda: cooldowns.retry_in([uuid.UUID(configuration_id)]) == 0, timeout=30)


@pytest.fixture
async def backup(aiohttp_server: Any) -> FakeOpenAI:
    """A second upstream."""
    return await start_openai_upstream(aiohttp_server, content="from the backup")


def refused_url() -> str:
    """A local address where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def chain(client: TestClient, user: ApiUser, first: FakeOpenAI, second: FakeOpenAI, **first_fields: Any
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A default configuration on `first` falling back to one on `second`."""
    fallback = await openai_config(client, user, second, name="backup", is_default=False)
    primary = await openai_config(client, user, first, name="primary", is_default=True,
                                  fallback_ids=[fallback["id"]], **first_fields)
    return primary, fallback


async def call(client: TestClient, user: ApiUser, **kwargs: Any) -> Any:
    async with sdk(client, user) as api:
        return await api.chat.completions.with_raw_response.create(model="x", messages=MESSAGES, **kwargs)


@pytest.mark.parametrize("step", [500, 503, 429, 408, 403, {"status": 429, "retry_after": "1"}])
async def test_fails_over_on_upstream_status(client: TestClient, user: ApiUser, fake: FakeOpenAI,
                                             backup: FakeOpenAI, step: Any) -> None:
    _, fallback = await chain(client, user, fake, backup)
    fake.script([step])
    raw = await call(client, user)
    assert raw.parse().choices[0].message.content == "from the backup"
    assert raw.headers["X-LLM-Configuration-Id"] == fallback["id"]
    assert raw.headers["X-LLM-Gateway-Attempts"] == "2"
    assert len(fake.requests) == 1 and len(backup.requests) == 1


async def test_fails_over_on_revoked_key_and_connection_refused(client: TestClient, user: ApiUser,
                                                                fake: FakeOpenAI, backup: FakeOpenAI) -> None:
    await chain(client, user, fake, backup, api_key="sk-revoked-key-000000000000")
    assert (await call(client, user)).headers["X-LLM-Gateway-Attempts"] == "2"
    assert fake.requests[-1].status == 401
    other = await make_user_chain(client, backup, base_url=refused_url())
    assert (await call(client, other)).parse().choices[0].message.content == "from the backup"


async def make_user_chain(client: TestClient, second: FakeOpenAI, **first_fields: Any) -> ApiUser:
    from tests.factories import make_user

    user = await make_user(client)
    fallback = await openai_config(client, user, second, is_default=False)
    await openai_config(client, user, second, is_default=True, fallback_ids=[fallback["id"]], **first_fields)
    return user


async def test_no_failover_on_400(client: TestClient, user: ApiUser, fake: FakeOpenAI, backup: FakeOpenAI) -> None:
    primary, _ = await chain(client, user, fake, backup)
    fake.script([400])
    with pytest.raises(openai.BadRequestError) as caught:
        await call(client, user)
    assert caught.value.response.headers["X-LLM-Gateway-Attempts"] == "1"
    assert caught.value.response.headers["X-LLM-Configuration-Id"] == primary["id"]
    assert backup.requests == []


async def test_all_failed_gives_the_last_error(client: TestClient, user: ApiUser, fake: FakeOpenAI,
                                               backup: FakeOpenAI) -> None:
    await chain(client, user, fake, backup)
    fake.script([500])
    backup.script([{"status": 429, "retry_after": "7", "echo_key_in_error": True}])
    with pytest.raises(openai.RateLimitError) as caught:
        await call(client, user)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert caught.value.response.headers["X-LLM-Gateway-Attempts"] == "2"
    assert DEFAULT_OPENAI_KEY not in caught.value.response.text
    assert set(caught.value.body) == {"message", "type", "code", "param"}  # type: ignore[arg-type]


async def test_connection_error_is_502_and_timeout_504(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake, base_url=refused_url())
    resp = await client.post("/v1/chat/completions", headers=user.headers, json={"model": "x", "messages": MESSAGES})
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_unreachable"
    other = await make_user_chain(client, fake)
    fake.behaviour.hang = True  # no answer within the upstream timeout, for both configurations
    resp = await client.post("/v1/chat/completions", headers=other.headers, json={"model": "x", "messages": MESSAGES})
    assert resp.status == 504
    assert resp.headers["X-LLM-Gateway-Attempts"] == "2"


async def test_cooldown_then_half_open(client: TestClient, user: ApiUser, fake: FakeOpenAI,
                                       backup: FakeOpenAI) -> None:
    primary, _ = await chain(client, user, fake, backup)
    fake.behaviour.status = 500
    for _ in range(3):
        assert (await call(client, user)).headers["X-LLM-Gateway-Attempts"] == "2"
    assert len(fake.requests) == 3
    # Cooling down: the primary is skipped, not even tried.
    raw = await call(client, user)
    assert raw.headers["X-LLM-Gateway-Attempts"] == "1" and len(fake.requests) == 3
    await cooled_down(client, primary["id"])
    # Half-open: one request probes it, still failing → another cooldown at once.
    assert (await call(client, user)).headers["X-LLM-Gateway-Attempts"] == "2"
    assert len(fake.requests) == 4
    assert (await call(client, user)).headers["X-LLM-Gateway-Attempts"] == "1"
    assert len(fake.requests) == 4
    # It recovers; the next probe succeeds and closes the circuit.
    fake.behaviour.status = 200
    await cooled_down(client, primary["id"])
    assert (await call(client, user)).headers["X-LLM-Gateway-Attempts"] == "1"
    assert len(fake.requests) == 5
    assert len((await call(client, user)).headers) and len(fake.requests) == 6
    metrics = await (await client.get("/metrics")).text()
    assert "llm_gateway_cooldowns_total 2.0" in metrics
    assert "llm_gateway_failovers_total 4.0" in metrics


async def test_half_open_admits_one_probe(client: TestClient, user: ApiUser, fake: FakeOpenAI,
                                          backup: FakeOpenAI) -> None:
    primary, fallback = await chain(client, user, fake, backup)
    fake.behaviour.status = 500
    for _ in range(3):
        await call(client, user)
    await cooled_down(client, primary["id"])
    fake.behaviour.status = 200
    release = asyncio.Event()

    async def held(seconds: float | None) -> None:  # the probe stays in flight until the others are served
        await release.wait()

    fake.pause = held  # type: ignore[method-assign]
    fake.behaviour.delay_s = 1.0
    probe = asyncio.create_task(call(client, user))
    assert await settled(lambda: len(fake.requests) == 4, timeout=30)  # the probe reached the primary
    others = await asyncio.gather(*(call(client, user) for _ in range(3)))
    release.set()
    results = [await probe, *others]
    # One request probed the recovering primary; the others went straight to the backup meanwhile.
    assert len(fake.requests) == 4
    served = sorted(r.headers["X-LLM-Configuration-Id"] for r in results)
    assert served == sorted([primary["id"], fallback["id"], fallback["id"], fallback["id"]])


async def test_retry_after_sets_the_cooldown(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    fake.behaviour.status = 429
    fake.behaviour.retry_after = "60"
    for _ in range(3):
        resp = await client.post("/v1/chat/completions", headers=user.headers,
                                 json={"model": "x", "messages": MESSAGES})
        assert resp.status == 429
    default_over = time.monotonic() + COOLDOWN_S  # the default cooldown is over, Retry-After is not
    assert await settled(lambda: time.monotonic() > default_over, timeout=30)
    resp = await client.post("/v1/chat/completions", headers=user.headers, json={"model": "x", "messages": MESSAGES})
    assert resp.status == 503
    assert 55 <= int(resp.headers["Retry-After"]) <= 60
    assert resp.headers["X-LLM-Gateway-Attempts"] == "0"
    assert len(fake.requests) == 3


async def test_stream_fails_over_before_first_byte(client: TestClient, user: ApiUser, fake: FakeOpenAI,
                                                   backup: FakeOpenAI) -> None:
    _, fallback = await chain(client, user, fake, backup)
    fake.script([500, {"hang": True}])  # an error answer, then no answer within the timeout
    for _ in range(2):
        async with sdk(client, user) as api:
            raw = await api.chat.completions.with_raw_response.create(model="x", messages=MESSAGES, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
        assert text == "from the backup"
        assert raw.headers["X-LLM-Configuration-Id"] == fallback["id"]


async def test_stream_error_after_first_byte_ends_with_error_event(client: TestClient, user: ApiUser,
                                                                   fake: FakeOpenAI, backup: FakeOpenAI) -> None:
    await chain(client, user, fake, backup)
    fake.behaviour.chunks = 6
    for garbage, words in (("truncated_sse", "ended before"), ("reset", "failed")):
        fake.behaviour.garbage = garbage
        async with sdk(client, user) as api:
            stream = await api.chat.completions.create(model="x", messages=MESSAGES, stream=True)
            received = []
            with pytest.raises(openai.APIError) as caught:
                async for chunk in stream:
                    received.append(chunk)
        assert words in caught.value.message
        assert received  # the first events got through
    assert backup.requests == []  # too late to fail over: the client already had the first events
