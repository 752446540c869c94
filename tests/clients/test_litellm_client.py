"""litellm as a client, the way OpenHands calls a gateway: model "openai/<configuration name>", api_base the
gateway's /v1, api_key the gateway token; sync and async, streamed and not, errors as litellm's classes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import litellm
import pytest

from .conftest import CONFIGURATION, MESSAGES, Gateway

# litellm's own stream wrapper reads a pydantic attribute the deprecated way; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Accessing the 'model_(computed_)?fields' attribute:DeprecationWarning")


@pytest.fixture(autouse=True)
async def close_cached_clients() -> AsyncIterator[None]:
    """litellm caches its async HTTP clients across calls; close them on this test's loop, before it ends."""
    yield
    await litellm.close_litellm_async_clients()
    litellm.in_memory_llm_clients_cache.flush_cache()


def options(gateway: Gateway, token: str | None = None) -> dict[str, object]:
    return {"model": f"openai/{CONFIGURATION}", "api_base": gateway.url, "api_key": token or gateway.token,
            "messages": MESSAGES, "num_retries": 0}


async def test_completion_sync_and_streamed(gateway: Gateway) -> None:
    def calls() -> tuple[str, int, str]:
        reply = litellm.completion(**options(gateway))
        pieces = [c.choices[0].delta.content or "" for c in litellm.completion(**options(gateway), stream=True)]
        return reply.choices[0].message.content, reply.usage.prompt_tokens, "".join(pieces)

    content = gateway.fake.behaviour.content
    assert await asyncio.to_thread(calls) == (content, 12, content)
    # The configuration's upstream model went out, not the name the client used.
    assert gateway.fake.last_request.model == "gpt-4o-mini"


async def test_acompletion_and_streamed_usage(gateway: Gateway) -> None:
    reply = await litellm.acompletion(**options(gateway))
    assert reply.choices[0].message.content == gateway.fake.behaviour.content
    chunks = [c async for c in await litellm.acompletion(**options(gateway), stream=True,
                                                         stream_options={"include_usage": True})]
    usage = [c.usage for c in chunks if getattr(c, "usage", None)]
    assert usage and usage[-1].completion_tokens == 5


async def test_errors_are_litellm_exceptions(gateway: Gateway) -> None:
    with pytest.raises(litellm.AuthenticationError):
        await litellm.acompletion(**options(gateway, token="lgw_not-a-token"))
    gateway.fake.script([{"status": 429, "retry_after": "1"}])
    with pytest.raises(litellm.RateLimitError):
        await litellm.acompletion(**options(gateway))
