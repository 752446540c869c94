"""`send_once`: one upstream call, no failover, its own timeout — what configuration tests build on."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.proxy.dispatch import send_once
from gateway.proxy.forward import Target
from gateway.ssrf import UrlPolicy
from tests.fakes.anthropic_upstream import DEFAULT_ANTHROPIC_KEY, start_anthropic_upstream
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI

from .conftest import MESSAGES

LOCAL = UrlPolicy(allow_private=True)  # the fakes listen on 127.0.0.1
BODY = {"model": "ignored", "messages": MESSAGES, "max_tokens": 5}


def target(fake: FakeOpenAI, key: str = DEFAULT_OPENAI_KEY, **fields: Any) -> Target:
    values: dict[str, Any] = {"provider": "custom", "wire": "openai", "litellm_provider": "custom_openai",
                              "base_url": fake.url, "model": "gpt-4o-mini", "api_key": key}
    values.update(fields)
    return Target(**values)


async def test_success_error_and_timeout(fake: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as http:
        result = await send_once(http, target(fake), path="/chat/completions", body=BODY, timeout_s=5,
                                 urls=LOCAL)
        assert result.status == 200 and b"chat.completion" in result.body
        assert fake.last_request.body["model"] == "gpt-4o-mini"
        assert DEFAULT_OPENAI_KEY not in repr(target(fake))

        fake.script([{"status": 429, "retry_after": "5", "echo_key_in_error": True}])
        with pytest.raises(UpstreamError) as caught:
            await send_once(http, target(fake), path="/chat/completions", body=BODY, timeout_s=5,
                            urls=LOCAL)
        assert caught.value.status == 429 and caught.value.headers["Retry-After"] == "5"
        assert DEFAULT_OPENAI_KEY not in caught.value.message

        fake.behaviour.hang = True  # only the timeout can end the call
        with pytest.raises(UpstreamTimeout):
            await send_once(http, target(fake), path="/chat/completions", body=BODY, timeout_s=0.2,
                            urls=LOCAL)


async def test_ssrf_policy_applies(fake: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as http:
        for base_url in (fake.url, "http://169.254.169.254/v1"):
            with pytest.raises(UpstreamError) as caught:
                await send_once(http, target(fake, base_url=base_url), path="/chat/completions", body=BODY,
                                timeout_s=5, urls=UrlPolicy())
            assert caught.value.code == "upstream_address_refused"
    assert fake.requests == []


async def test_translated_provider(aiohttp_server: Any) -> None:
    claude = await start_anthropic_upstream(aiohttp_server)
    anthropic = Target(provider="anthropic", wire="anthropic", litellm_provider="anthropic", base_url=claude.url,
                       model="claude-sonnet-4-5", api_key=DEFAULT_ANTHROPIC_KEY)
    async with aiohttp.ClientSession() as http:
        result = await send_once(http, anthropic, path="/chat/completions", body=BODY, timeout_s=30,
                                 urls=LOCAL)
    assert result.status == 200 and claude.behaviour.content.encode() in result.body
    assert claude.last_request.body["max_tokens"] == 5
