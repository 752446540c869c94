"""The openai Python SDK, sync and async: every endpoint the gateway serves, streamed and not, structured output
and tool calls, and each failure raised as the SDK's own exception class."""

from __future__ import annotations

import asyncio

import openai
import pytest
from pydantic import BaseModel

from .conftest import CONFIGURATION, MESSAGES, Gateway


class City(BaseModel):
    name: str
    population: int
    coastal: bool


def async_sdk(gateway: Gateway, **headers: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url, api_key=gateway.token, max_retries=0,
                              default_headers=headers or None)


async def test_async_chat_completions_embeddings_responses_models(gateway: Gateway) -> None:
    content = gateway.fake.behaviour.content
    gateway.fake.behaviour.usage_chunk = "empty_delta"  # LiteLLM's way: usage the client never asked for
    async with async_sdk(gateway) as api:
        chat = await api.chat.completions.create(model=CONFIGURATION, messages=MESSAGES)  # type: ignore[arg-type]
        assert chat.choices[0].message.content == content and chat.usage and chat.usage.prompt_tokens == 12
        chunks = [c async for c in await api.chat.completions.create(
            model=CONFIGURATION, messages=MESSAGES, stream=True)]  # type: ignore[arg-type]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == content
        assert all(c.usage is None and c.choices for c in chunks)
        text = await api.completions.create(model=CONFIGURATION, prompt="Say hello")
        assert text.choices[0].text == content
        pieces = [c.choices[0].text async for c in await api.completions.create(
            model=CONFIGURATION, prompt="Say hello", stream=True) if c.choices]
        assert "".join(pieces) == content
        vectors = await api.embeddings.create(model=CONFIGURATION, input=["a", "b"])  # base64, the SDK's default
        assert [len(v.embedding) for v in vectors.data] == [8, 8]
        floats = await api.embeddings.create(model=CONFIGURATION, input="a", encoding_format="float")
        assert floats.data[0].embedding == pytest.approx(vectors.data[0].embedding, abs=1e-6)
        response = await api.responses.create(model=CONFIGURATION, input="Say hello")
        assert response.output_text == content
        events = [e async for e in await api.responses.create(model=CONFIGURATION, input="Say hello", stream=True)]
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == content
        assert events[-1].type == "response.completed"
        models = [m.id async for m in api.models.list()]
    assert models == [CONFIGURATION]


async def test_async_structured_output_and_tool_calls(gateway: Gateway) -> None:
    async with async_sdk(gateway) as api:
        parsed = await api.chat.completions.parse(model=CONFIGURATION, messages=MESSAGES,  # type: ignore[arg-type]
                                                  response_format=City)
        assert parsed.choices[0].message.parsed == City(name="fake", population=7, coastal=True)
        tool = openai.pydantic_function_tool(City)
        called = await api.chat.completions.parse(model=CONFIGURATION, messages=MESSAGES,  # type: ignore[arg-type]
                                                  tools=[tool], tool_choice="required")
        (call,) = called.choices[0].message.tool_calls or []
        assert call.function.name == "City" and call.function.parsed_arguments == City(name="fake", population=7,
                                                                                       coastal=True)
        async with api.chat.completions.stream(model=CONFIGURATION, messages=MESSAGES,  # type: ignore[arg-type]
                                               tools=[tool], tool_choice="required") as stream:
            final = await stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.choices[0].message.tool_calls[0].function.parsed_arguments == City(  # type: ignore[index]
        name="fake", population=7, coastal=True)


async def test_sync_client(gateway: Gateway) -> None:
    """The sync SDK (its own httpx transport, in a thread: the gateway runs on the test's loop)."""

    def calls() -> tuple[str | None, str, int, str, list[str]]:
        with openai.OpenAI(base_url=gateway.url, api_key=gateway.token, max_retries=0) as api:
            chat = api.chat.completions.create(model=CONFIGURATION, messages=MESSAGES)  # type: ignore[arg-type]
            streamed = "".join(c.choices[0].delta.content or "" for c in api.chat.completions.create(
                model=CONFIGURATION, messages=MESSAGES, stream=True) if c.choices)  # type: ignore[arg-type]
            vectors = api.embeddings.create(model=CONFIGURATION, input="a")
            response = api.responses.create(model=CONFIGURATION, input="Say hello")
            models = [m.id for m in api.models.list()]
        return chat.choices[0].message.content, streamed, len(vectors.data[0].embedding), response.output_text, models

    content = gateway.fake.behaviour.content
    assert await asyncio.to_thread(calls) == (content, content, 8, content, [CONFIGURATION])


async def test_failures_raise_the_sdk_exception_of_their_class(gateway: Gateway) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.url, api_key="lgw_not-a-token", max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.models.list()
    async with async_sdk(gateway, **{"X-LLM-Configuration": "no-such-configuration"}) as lost:
        with pytest.raises(openai.NotFoundError):
            await lost.chat.completions.create(model=CONFIGURATION, messages=MESSAGES)  # type: ignore[arg-type]
    async with async_sdk(gateway) as api:
        with pytest.raises(openai.BadRequestError) as refused:
            await api.chat.completions.create(model=CONFIGURATION, messages=MESSAGES,  # type: ignore[arg-type]
                                              extra_body={"api_base": "http://elsewhere.example"})
        assert refused.value.param == "api_base"
        gateway.fake.script([{"status": 429, "retry_after": "2"}, 401, 500, 503])
        with pytest.raises(openai.RateLimitError) as limited:
            await api.chat.completions.create(model=CONFIGURATION, messages=MESSAGES)  # type: ignore[arg-type]
        assert limited.value.response.headers["retry-after"] == "2"
        with pytest.raises(openai.AuthenticationError):  # the upstream refused the stored key
            await api.chat.completions.create(model=CONFIGURATION, messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(openai.InternalServerError) as broken:
            await api.chat.completions.create(model=CONFIGURATION, messages=MESSAGES,  # type: ignore[arg-type]
                                              stream=True)
        assert broken.value.status_code == 500
        with pytest.raises(openai.InternalServerError) as unavailable:
            await api.responses.create(model=CONFIGURATION, input="Say hello")
    assert unavailable.value.status_code == 503
