"""State clients can grow is bounded: conversation bindings (an LRU in bytes, misses not kept forever) and the
Prometheus label values (the known endpoints plus "other", never a client's path)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.settings import Settings
from gateway.web.appkeys import CONFIG_CACHE
from tests.factories import ApiUser, make_user
from tests.fakes.openai_upstream import FakeOpenAI

from .conftest import MESSAGES, openai_config

CACHE_BYTES = 32 * 1024


@pytest.fixture
async def small_cache_client(aiohttp_client: Any, settings: Settings) -> TestClient:
    """The gateway with a 32 KiB binding cache."""
    app = create_app(settings.model_copy(update={"binding_cache_bytes": CACHE_BYTES}))
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def test_many_conversation_ids_do_not_grow_the_binding_cache_past_its_bound(
        small_cache_client: TestClient, fake: FakeOpenAI) -> None:
    client = small_cache_client
    user = await make_user(client)
    config = await openai_config(client, user, fake)
    resp = await client.put("/api/conversations/bound-1/llm-configuration", headers=user.headers,
                            json={"configuration_id": config["id"]})
    assert resp.status in (200, 201), await resp.text()
    cache = client.server.app[CONFIG_CACHE]
    user_id = uuid.UUID(user.id)
    # Through the door: requests with fresh conversation ids, as a client would send them.
    for n in range(20):
        resp = await client.post("/v1/chat/completions", json={"model": "x", "messages": MESSAGES},
                                 headers={**user.headers, "X-Conversation-Id": f"door-{n}-{'y' * 200}"})
        assert resp.status == 200
    # Then many more (each one database lookup), long ones, as an attacker would.
    sizes = []
    for n in range(400):
        assert await cache.binding(user_id, f"attack-{n}-{uuid.uuid4().hex * 6}") is None
        sizes.append(cache.bindings.bytes)
    assert max(sizes) <= CACHE_BYTES
    assert 0 < len(cache.bindings) < 400
    # The bound evicts the least recently used: a binding still used stays, its answer unchanged.
    assert str(await cache.binding(user_id, "bound-1")) == config["id"]
    for n in range(400):
        await cache.binding(user_id, f"late-{n}-{'z' * 300}")
        assert str(await cache.binding(user_id, "bound-1")) == config["id"]
    assert cache.bindings.bytes <= CACHE_BYTES


async def test_a_miss_is_asked_again_once_its_time_is_up(client: TestClient, user: ApiUser,
                                                         fake: FakeOpenAI) -> None:
    config = await openai_config(client, user, fake)
    cache = client.server.app[CONFIG_CACHE]
    user_id = uuid.UUID(user.id)
    assert await cache.binding(user_id, "conv-late") is None
    cache.bindings.miss_ttl_s = 0.0  # the next miss expires at once, as every miss does after its time
    assert await cache.binding(user_id, "conv-late-2") is None
    # Bound behind the cache's back (another process whose notice was lost): an expired miss is asked again.
    resp = await client.put("/api/conversations/conv-late-2/llm-configuration", headers=user.headers,
                            json={"configuration_id": config["id"]})
    assert resp.status in (200, 201)
    cache.bindings.put(user_id, "conv-late-2", None)
    assert str(await cache.binding(user_id, "conv-late-2")) == config["id"]


async def test_client_paths_never_become_metric_labels(client: TestClient, user: ApiUser,
                                                       fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    marks = [f"zz{uuid.uuid4().hex[:12]}" for _ in range(50)]
    for n, mark in enumerate(marks):
        path = f"/v1/{mark}" if n % 2 else f"/v1/{mark}/deeper/{mark}"
        resp = await client.post(path, json={"model": "x", "input": "hi"}, headers=user.headers)
        assert resp.status < 500 or resp.status == 502
        await client.post(f"/{mark}", json={}, headers=user.headers)  # a 404 outside /v1 as well
    await client.post("/v1/chat/completions", json={"model": "x", "messages": MESSAGES}, headers=user.headers)
    text = await (await client.get("/metrics")).text()
    assert not any(mark in text for mark in marks)
    endpoints = {sample.labels["endpoint"] for family in text_string_to_metric_families(text)
                 for sample in family.samples if "endpoint" in sample.labels}
    assert endpoints == {"/chat/completions", "other"}
