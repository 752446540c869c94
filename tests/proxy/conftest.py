"""Proxy fixtures: a fake OpenAI upstream, a user of the gateway, and configurations pointing at the fake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from tests.factories import TestUser, make_configuration, make_user
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI, start_openai_upstream

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def fake(aiohttp_server: Any) -> FakeOpenAI:
    """A fake OpenAI upstream accepting DEFAULT_OPENAI_KEY."""
    return await start_openai_upstream(aiohttp_server)


@pytest.fixture
async def user(client: TestClient) -> TestUser:
    """A user of the gateway."""
    return await make_user(client)


async def openai_config(client: TestClient, user: TestUser, fake: FakeOpenAI, **fields: Any) -> dict[str, Any]:
    """A configuration that sends to the fake with a key it accepts (override any field)."""
    values: dict[str, Any] = {"provider": "custom", "model": "gpt-4o-mini", "base_url": fake.url,
                              "api_key": DEFAULT_OPENAI_KEY}
    values.update(fields)
    return await make_configuration(client, user, **values)


def sdk(client: TestClient, user: TestUser, **headers: str) -> openai.AsyncOpenAI:
    """The real openai SDK pointed at the gateway, as that user, without its own retries."""
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=user.token, max_retries=0,
                              default_headers=headers or None)


def sync_sdk(client: TestClient, user: TestUser, **headers: str) -> openai.OpenAI:
    """The sync openai SDK (call it in a thread: the gateway runs on this loop)."""
    return openai.OpenAI(base_url=str(client.make_url("/v1")), api_key=user.token, max_retries=0,
                         default_headers=headers or None)


async def settled(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Wait until predicate() holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.fixture
async def gateway_sdk(client: TestClient, user: TestUser) -> AsyncIterator[openai.AsyncOpenAI]:
    """The async SDK as `user`."""
    async with sdk(client, user) as api:
        yield api
