"""Proxy fixtures: a fake OpenAI upstream, a user of the gateway, and configurations pointing at the fake.

Every test here, like every test of the suite, runs under the key-leak watch of tests/leakwatch.py: every log
record of every phase (DEBUG, aiohttp's and litellm's loggers included), every response the gateway sends
(headers and body, streams joined), every row and the captured output; none may contain a key the test made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.proxy.translation.pool import WorkerPool
from gateway.settings import Settings
from tests.factories import ApiUser, make_configuration, make_user
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI, start_openai_upstream
from tests.leakwatch import LeakWatch

MESSAGES = [{"role": "user", "content": "hi"}]


class ResponseRecorder:
    """Everything the gateway answered during one test (as the leak watch recorded it)."""

    def __init__(self, watch: LeakWatch) -> None:
        self.watch = watch

    @property
    def chunks(self) -> list[bytes]:
        """Each answer: status line, headers and body."""
        return [recorded.text().encode() for recorded in self.watch.responses]


@pytest.fixture
def responses(key_watch: LeakWatch) -> ResponseRecorder:
    """The gateway's answers in this test."""
    return ResponseRecorder(key_watch)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, responses: ResponseRecorder,
                 translation_pool: WorkerPool | None) -> TestClient:
    """The whole gateway app, its answers recorded (by the leak watch, through aiohttp_client); translated calls
    go to the session's workers."""
    return await aiohttp_client(create_app(settings, translation_pool=translation_pool))  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def no_key_anywhere(key_watch: LeakWatch) -> LeakWatch:
    """No API key in any log record or any answer of the gateway (the suite-wide watch, named for old tests)."""
    return key_watch


@pytest.fixture
async def fake(aiohttp_server: Any) -> FakeOpenAI:
    """A fake OpenAI upstream accepting DEFAULT_OPENAI_KEY."""
    return await start_openai_upstream(aiohttp_server)


@pytest.fixture
async def user(client: TestClient) -> ApiUser:
    """A user of the gateway."""
    return await make_user(client)


async def openai_config(client: TestClient, user: ApiUser, fake: FakeOpenAI, **fields: Any) -> dict[str, Any]:
    """A configuration that sends to the fake with a key it accepts (override any field)."""
    values: dict[str, Any] = {"provider": "custom", "model": "gpt-4o-mini", "base_url": fake.url,
                              "api_key": DEFAULT_OPENAI_KEY}
    values.update(fields)
    return await make_configuration(client, user, **values)


def sdk(client: TestClient, user: ApiUser, **headers: str) -> openai.AsyncOpenAI:
    """The real openai SDK pointed at the gateway, as that user, without its own retries."""
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=user.token, max_retries=0,
                              default_headers=headers or None)


def sync_sdk(client: TestClient, user: ApiUser, **headers: str) -> openai.OpenAI:
    """The sync openai SDK (call it in a thread: the gateway runs on this loop)."""
    return openai.OpenAI(base_url=str(client.make_url("/v1")), api_key=user.token, max_retries=0,
                         default_headers=headers or None)


@pytest.fixture
async def gateway_sdk(client: TestClient, user: ApiUser) -> AsyncIterator[openai.AsyncOpenAI]:
    """The async SDK as `user`."""
    async with sdk(client, user) as api:
        yield api
