"""Usage records: one per request, tokens as the upstream reported them, cost from litellm's price list,
written in batches with last_used_at; the usage API and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.configurations.model_catalog import model_data
from gateway.proxy.usage import MIN_PAUSE_S, cost_usd, next_pause
from gateway.store.models import LLMConfiguration, UsageRecord
from gateway.web.appkeys import SESSIONMAKER
from tests.factories import ApiUser, make_user
from tests.fakes.openai_upstream import FakeOpenAI

from .conftest import MESSAGES, openai_config, sdk

PROMPT, COMPLETION = 13, 5


async def usage(client: TestClient, user: ApiUser, path: str = "/api/usage", **params: str) -> dict[str, Any]:
    resp = await client.get(path, headers=user.headers, params=params)
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def wait_for_requests(client: TestClient, user: ApiUser, n: int) -> dict[str, Any]:
    report: dict[str, Any] = {}

    async def count() -> int:
        nonlocal report
        report = await usage(client, user)
        return int(report["totals"]["requests"])

    deadline = time.monotonic() + 30  # generous: a loaded CI flushes late, a healthy one returns at once
    while time.monotonic() < deadline:
        if await count() >= n:
            return report
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {report['totals']['requests']} of {n} usage records arrived")


async def test_usage_totals_match_the_upstream(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    fake.behaviour.prompt_tokens, fake.behaviour.completion_tokens = PROMPT, COMPLETION
    config = await openai_config(client, user, fake, model="gpt-4o-mini")
    async with sdk(client, user, **{"X-Conversation-Id": "conv-usage"}) as api:
        await api.chat.completions.create(model="x", messages=MESSAGES)
        async for _ in await api.chat.completions.create(model="x", messages=MESSAGES, stream=True):
            pass
        async for _ in await api.chat.completions.create(model="x", messages=MESSAGES, stream=True,
                                                         stream_options={"include_usage": True}):
            pass
        await api.completions.create(model="x", prompt="hi")
        async for _ in await api.responses.create(model="x", input="hi", stream=True):
            pass
        await api.embeddings.create(model="x", input="hi")
    report = await wait_for_requests(client, user, 6)
    totals = report["totals"]
    assert totals["prompt_tokens"] == 6 * PROMPT
    assert totals["completion_tokens"] == 5 * COMPLETION  # embeddings have no completion
    assert totals["errors"] == 0
    expected_cost = cost_usd(model_data(), litellm_provider="custom_openai", model="gpt-4o-mini",
                             prompt_tokens=6 * PROMPT, completion_tokens=5 * COMPLETION)
    assert expected_cost > 0
    assert totals["cost_usd"] == pytest.approx(expected_cost)
    async with client.server.app[SESSIONMAKER]() as session:
        rows = (await session.execute(select(UsageRecord))).scalars().all()
        configuration = await session.get(LLMConfiguration, uuid.UUID(config["id"]))
    assert {r.conversation_id for r in rows} == {"conv-usage"}
    assert {r.stream for r in rows} == {True, False}
    assert all(r.attempts == 1 and r.status == 200 and r.model == "gpt-4o-mini" for r in rows)
    assert configuration is not None and configuration.last_used_at is not None
    assert configuration.updated_at < configuration.last_used_at  # usage does not count as an edit


async def test_usage_grouping_and_per_configuration(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    first = await openai_config(client, user, fake, name="first")
    second = await openai_config(client, user, fake, name="second")
    async with sdk(client, user) as api:
        for name in ("first", "first", "second"):
            await api.chat.completions.create(model=name, messages=MESSAGES)
    fake.script([400])
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "second", "messages": MESSAGES})
    assert resp.status == 400
    await wait_for_requests(client, user, 4)
    by_config = await usage(client, user, group_by="configuration")
    groups = {g["configuration_name"]: g for g in by_config["groups"]}
    assert groups["first"]["requests"] == 2 and groups["first"]["errors"] == 0
    assert groups["second"]["requests"] == 2 and groups["second"]["errors"] == 1
    assert groups["first"]["key"] == first["id"]
    by_day = await usage(client, user, group_by="day")
    assert len(by_day["groups"]) == 1 and by_day["groups"][0]["requests"] == 4
    assert len(by_day["groups"][0]["key"]) == 10  # YYYY-MM-DD
    one = await usage(client, user, f"/api/llm-configurations/{second['id']}/usage")
    assert one["totals"]["requests"] == 2
    empty = await usage(client, user, since="2000-01-01T00:00:00Z", until="2000-01-02T00:00:00Z")
    assert empty["totals"]["requests"] == 0
    # Someone else sees none of it, and not this user's configurations either.
    stranger = await make_user(client)
    assert (await usage(client, stranger))["totals"]["requests"] == 0
    resp = await client.get(f"/api/llm-configurations/{second['id']}/usage", headers=stranger.headers)
    assert resp.status == 404


@pytest.mark.parametrize("params", [{"group_by": "week"}, {"since": "yesterday"}, {"bogus": "1"},
                                    {"since": "2024-02-01T00:00:00Z", "until": "2024-01-01T00:00:00Z"}])
async def test_usage_query_errors(client: TestClient, user: ApiUser, params: dict[str, str]) -> None:
    resp = await client.get("/api/usage", headers=user.headers, params=params)
    assert resp.status == 400
    assert (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_metrics(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    async with sdk(client, user) as api:
        await api.chat.completions.create(model="x", messages=MESSAGES)
    fake.script([400])
    await client.post("/v1/chat/completions", headers=user.headers, json={"model": "x", "messages": MESSAGES})
    text = await (await client.get("/metrics")).text()
    assert 'llm_gateway_requests_total{endpoint="/chat/completions",status="200"} 1.0' in text
    assert 'llm_gateway_requests_total{endpoint="/chat/completions",status="400"} 1.0' in text
    assert 'llm_gateway_request_latency_seconds_count{endpoint="/chat/completions"} 2.0' in text
    assert 'llm_gateway_upstream_attempts_total{outcome="ok"} 1.0' in text
    assert "llm_gateway_failovers_total 0.0" in text


async def test_requests_refused_before_a_configuration_group_as_no_configuration(
        client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    """The README walkthrough's everyday failures (a name that is not a configuration, a refused field) leave
    rows without a configuration; the Usage page's report groups them instead of answering 500."""
    await openai_config(client, user, fake, name="work-gpt")
    async with sdk(client, user) as api:
        await api.chat.completions.create(model="work-gpt", messages=MESSAGES)
    unknown = await client.post("/v1/chat/completions", headers={**user.headers, "X-LLM-Configuration": "nope"},
                                json={"model": "work-gpt", "messages": MESSAGES})
    refused = await client.post("/v1/chat/completions", headers=user.headers,
                                json={"model": "work-gpt", "messages": MESSAGES, "api_base": "http://x"})
    assert (unknown.status, refused.status) == (404, 400)
    await wait_for_requests(client, user, 3)
    report = await usage(client, user, group_by="configuration")
    groups = {g["configuration_name"]: g for g in report["groups"]}
    assert set(groups) == {"work-gpt", "(no configuration)"}
    assert groups["(no configuration)"]["key"] == "none"
    assert (groups["(no configuration)"]["requests"], groups["(no configuration)"]["errors"]) == (2, 2)
    assert (groups["work-gpt"]["requests"], groups["work-gpt"]["errors"]) == (1, 0)
    by_day = await usage(client, user, group_by="day")
    assert [g["requests"] for g in by_day["groups"]] == [3]
    # A user without any configuration yet, calling the walkthrough's model name.
    newcomer = await make_user(client)
    resp = await client.post("/v1/chat/completions", headers=newcomer.headers,
                             json={"model": "work-gpt", "messages": MESSAGES})
    assert resp.status >= 400
    await wait_for_requests(client, newcomer, 1)
    (group,) = (await usage(client, newcomer, group_by="configuration"))["groups"]
    assert (group["configuration_name"], group["requests"]) == ("(no configuration)", 1)


def test_the_flusher_comes_back_sooner_while_busy_and_at_the_interval_when_idle() -> None:
    pause = next_pause(1.0, 3000, interval_s=1.0, batch_size=500)
    assert pause == pytest.approx(1 / 6)  # 3,000 records a second: back when ~500 have arrived
    assert next_pause(pause, 500, interval_s=1.0, batch_size=500) == pytest.approx(pause)  # steady
    assert next_pause(pause, 100, interval_s=1.0, batch_size=500) == pytest.approx(5 / 6)  # slowing: longer
    assert next_pause(pause, 10, interval_s=1.0, batch_size=500) == 1.0  # never beyond the interval
    assert next_pause(pause, 0, interval_s=1.0, batch_size=500) == 1.0  # idle, or the flush failed
    assert next_pause(MIN_PAUSE_S, 10**6, interval_s=1.0, batch_size=500) == MIN_PAUSE_S  # never a busy loop
