"""langchain-openai's ChatOpenAI pointed at the gateway: invoke and stream, sync and async."""

from __future__ import annotations

import asyncio

from langchain_openai import ChatOpenAI

from .conftest import CONFIGURATION, Gateway


def chat(gateway: Gateway) -> ChatOpenAI:
    return ChatOpenAI(model=CONFIGURATION, base_url=gateway.url, api_key=gateway.token,  # type: ignore[arg-type]
                      max_retries=0)


async def test_invoke_and_stream(gateway: Gateway) -> None:
    llm = chat(gateway)

    def calls() -> tuple[str, str]:
        reply = llm.invoke("Say hello")
        return str(reply.content), "".join(str(c.content) for c in llm.stream("Say hello"))

    content = gateway.fake.behaviour.content
    assert await asyncio.to_thread(calls) == (content, content)
    reply = await llm.ainvoke("Say hello")
    assert reply.content == content and reply.usage_metadata and reply.usage_metadata["input_tokens"] == 12
    assert "".join([str(c.content) async for c in llm.astream("Say hello")]) == content
