"""Proxy fixtures: a fake OpenAI upstream, a user of the gateway, and configurations pointing at the fake.

Every test here runs under a capture of every log record (DEBUG, aiohttp's and litellm's loggers included) and
of every response the gateway sends (headers and body, streams chunk by chunk); at the end of each test none
of it may contain an API key.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings

from tests.factories import TestUser, make_configuration, make_user
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI, start_openai_upstream

MESSAGES = [{"role": "user", "content": "hi"}]
# Upstream keys of every test look like this (the fakes' defaults, the factory's, the tests' own).
KEY_PATTERN = re.compile(r"sk-(?:ant-)?[A-Za-z0-9_-]{16,}")
NOISY_LOGGERS = ("aiohttp.access", "aiohttp.server", "aiohttp.client", "LiteLLM", "LiteLLM Router",
                 "LiteLLM Proxy", "httpx", "httpcore", "openai", "gateway", "sqlalchemy.engine")


class ResponseRecorder:
    """Everything the gateway answered during one test."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        self.chunks.append(str(dict(response.headers)).encode())
        if isinstance(response, web.Response):
            if isinstance(response.body, bytes):
                self.chunks.append(response.body)
            return
        write = response.write

        async def recording_write(data: bytes | bytearray | memoryview) -> None:
            self.chunks.append(bytes(data))
            await write(data)

        response.write = recording_write  # type: ignore[method-assign]


@pytest.fixture
def responses() -> ResponseRecorder:
    """The gateway's answers in this test."""
    return ResponseRecorder()


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, responses: ResponseRecorder) -> TestClient:
    """The whole gateway app, its answers recorded."""
    app = create_app(settings)
    app.on_response_prepare.append(responses.on_prepare)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def no_key_anywhere(caplog: pytest.LogCaptureFixture, responses: ResponseRecorder) -> Iterator[None]:
    """No API key in any log record or any answer of the gateway."""
    caplog.set_level(logging.DEBUG)
    for name in NOISY_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    logged = [record.getMessage() + " " + str(record.__dict__.get("args")) for record in caplog.records]
    # pytest.fail, not assert: assertion rewriting would print the key it found.
    for record, line in zip(caplog.records, logged):
        if KEY_PATTERN.search(line):
            pytest.fail(f"an API key in a log record of {record.name} ({record.pathname}:{record.lineno})")
        if "Bearer lgw_" in line:
            pytest.fail(f"an Authorization header in a log record of {record.name}")
    for chunk in responses.chunks:
        if KEY_PATTERN.search(chunk.decode("utf-8", "replace")):
            pytest.fail("an API key in a response of the gateway")


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


@pytest.fixture
async def gateway_sdk(client: TestClient, user: TestUser) -> AsyncIterator[openai.AsyncOpenAI]:
    """The async SDK as `user`."""
    async with sdk(client, user) as api:
        yield api
