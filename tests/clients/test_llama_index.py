"""llama-index's OpenAI-like LLM (any OpenAI-compatible server) pointed at the gateway: chat and completion,
streamed and not."""

from __future__ import annotations

import asyncio

import httpx
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike

from .conftest import CONFIGURATION, Gateway


async def test_chat_and_complete(gateway: Gateway) -> None:
    # Our own HTTP clients, closed at the end: llama-index never closes the ones it makes.
    async with httpx.AsyncClient() as async_http:
        with httpx.Client() as http:
            def llm(*, is_chat_model: bool) -> OpenAILike:
                return OpenAILike(model=CONFIGURATION, api_base=gateway.url, api_key=gateway.token,
                                  is_chat_model=is_chat_model, max_retries=0, context_window=8192,
                                  http_client=http, async_http_client=async_http)

            chat, plain = llm(is_chat_model=True), llm(is_chat_model=False)
            messages = [ChatMessage(role="user", content="Say hello")]

            def calls() -> tuple[str | None, str, str]:
                streamed = "".join(r.delta or "" for r in chat.stream_chat(messages))
                return chat.chat(messages).message.content, streamed, plain.complete("Say hello").text

            content = gateway.fake.behaviour.content
            assert await asyncio.to_thread(calls) == (content, content, content)
            assert (await chat.achat(messages)).message.content == content
            assert "".join([r.delta or "" async for r in await plain.astream_complete("Say hello")]) == content
    assert gateway.fake.requests_to("/v1/completions") and gateway.fake.requests_to("/v1/chat/completions")
