"""The clients against the gateway with a third-party OpenAI-compatible server as its upstream: LiteLLM's proxy
(tests/clients/litellm_proxy.py), started once for the module. The configuration stores the proxy's master key;
the leak watch sees it (tests/factories.py), so it may appear in no answer, log line or row of these tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import openai
import pytest
from aiohttp.test_utils import TestClient
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletionMessageParam

from gateway.store.models import UsageRecord
from tests.cli.test_cli import free_port
from tests.factories import ApiUser, make_configuration, make_user
from tests.proxy.test_usage_writer import recorded

from . import litellm_proxy
from .conftest import CONFIGURATION
from .litellm_proxy import LiteLLMProxy

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteLLMProxy]:
    running = litellm_proxy.start(tmp_path_factory.mktemp("litellm-proxy"), free_port())
    try:
        yield running
    finally:
        litellm_proxy.stop(running)


async def setup_user(client: TestClient, proxy: LiteLLMProxy, **fields: object) -> tuple[ApiUser, dict[str, object]]:
    """A user whose configuration CONFIGURATION sends to the proxy's MODEL with its master key."""
    user = await make_user(client)
    values = {"name": CONFIGURATION, "provider": "custom", "model": litellm_proxy.MODEL, "base_url": proxy.url,
              "api_key": proxy.master_key, **fields}
    return user, await make_configuration(client, user, **values)


def sdk(client: TestClient, user: ApiUser) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=user.token, max_retries=0)


async def usage_rows(client: TestClient, user: ApiUser, n: int) -> list[UsageRecord]:
    """The user's n usage rows, oldest first."""
    return sorted(await recorded(client, user, n), key=lambda row: row.created_at)


async def test_openai_sdk_chat_streamed_and_not_models_and_usage(client: TestClient, proxy: LiteLLMProxy) -> None:
    user, _ = await setup_user(client, proxy)
    async with sdk(client, user) as api:
        chat = await api.chat.completions.create(model=CONFIGURATION, messages=MESSAGES)
        assert chat.choices[0].message.content == litellm_proxy.REPLY
        assert chat.usage and (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (10, 20)  # LiteLLM's mock
        stream = await api.chat.completions.create(model=CONFIGURATION, messages=MESSAGES, stream=True)
        chunks = [c async for c in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == litellm_proxy.REPLY
        # The gateway asked LiteLLM for usage; the client did not, so it sees no usage chunk.
        assert all(c.usage is None for c in chunks)
        models = [m.id async for m in api.models.list()]
    assert models == [CONFIGURATION]
    plain, streamed = await usage_rows(client, user, 2)
    assert (plain.status, plain.stream, plain.prompt_tokens, plain.completion_tokens) == (200, False, 10, 20)
    assert (streamed.status, streamed.stream) == (200, True)
    assert streamed.prompt_tokens and streamed.completion_tokens  # what LiteLLM counted for the stream
    assert plain.model == streamed.model == litellm_proxy.MODEL


async def test_langchain_invoke_and_stream(client: TestClient, proxy: LiteLLMProxy) -> None:
    user, _ = await setup_user(client, proxy)
    llm = ChatOpenAI(model=CONFIGURATION, base_url=str(client.make_url("/v1")), api_key=user.token,
                     max_retries=0)

    def calls() -> tuple[str, str]:
        return str(llm.invoke("Say hello").content), "".join(str(c.content) for c in llm.stream("Say hello"))

    assert await asyncio.to_thread(calls) == (litellm_proxy.REPLY, litellm_proxy.REPLY)
    reply = await llm.ainvoke("Say hello")
    assert reply.content == litellm_proxy.REPLY
    assert reply.usage_metadata and reply.usage_metadata["input_tokens"] == 10
    assert "".join([str(c.content) async for c in llm.astream("Say hello")]) == litellm_proxy.REPLY
    assert [row.status for row in await usage_rows(client, user, 4)] == [200] * 4


async def test_litellm_errors_come_back_in_openai_envelope(client: TestClient, proxy: LiteLLMProxy) -> None:
    """What LiteLLM answers reaches the client with LiteLLM's status, in OpenAI's envelope, never with the key."""
    user, good = await setup_user(client, proxy, name="good")
    await make_configuration(client, user, name="unknown-model", provider="custom", model="no-such-model",
                             base_url=proxy.url, api_key=proxy.master_key)
    # A key LiteLLM does not know: without a database LiteLLM answers 400 "No connected db." (not 401), so the
    # gateway does not fail over to the fallback: another 4xx means the request itself is wrong.
    await make_configuration(client, user, name="wrong-key", provider="custom", model=litellm_proxy.MODEL,
                             base_url=proxy.url, api_key="sk-" + uuid.uuid4().hex, fallback_ids=[good["id"]])
    # LiteLLM's 429 does fail over, to the configuration that works.
    await make_configuration(client, user, name="limited", provider="custom", model=litellm_proxy.RATE_LIMITED,
                             base_url=proxy.url, api_key=proxy.master_key, fallback_ids=[good["id"]])
    async with sdk(client, user) as api:
        with pytest.raises(openai.BadRequestError) as unknown:
            await api.chat.completions.create(model="unknown-model", messages=MESSAGES)
        assert "Invalid model name passed in model=no-such-model" in unknown.value.message
        with pytest.raises(openai.BadRequestError) as refused:
            await api.chat.completions.create(model="wrong-key", messages=MESSAGES, stream=True)
        assert "No connected db" in refused.value.message
        assert refused.value.response.headers["X-LLM-Gateway-Attempts"] == "1"
        served = await api.chat.completions.with_raw_response.create(model="limited", messages=MESSAGES)
        assert served.headers["X-LLM-Gateway-Attempts"] == "2"
        assert served.headers["X-LLM-Configuration-Id"] == good["id"]
        assert served.parse().choices[0].message.content == litellm_proxy.REPLY
    for failure in (unknown.value, refused.value):
        body = failure.response.json()
        assert set(body) == {"error"} and body["error"]["message"] and "type" in body["error"]
        assert proxy.master_key not in failure.response.text
    statuses = sorted(row.status for row in await usage_rows(client, user, 3))
    assert statuses == [200, 400, 400]
