"""instructor's structured output through the gateway: it forces a tool call and validates the arguments into
a pydantic model, sync and async."""

from __future__ import annotations

import asyncio

import instructor
import openai
from pydantic import BaseModel

from .conftest import CONFIGURATION, MESSAGES, Gateway


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]


async def test_structured_output_via_tool_calls(gateway: Gateway) -> None:
    expected = Person(name="fake", age=7, tags=["fake"])

    def sync_call() -> Person:
        with openai.OpenAI(base_url=gateway.url, api_key=gateway.token, max_retries=0) as sdk:
            return instructor.from_openai(sdk).chat.completions.create(
                model=CONFIGURATION, messages=MESSAGES, response_model=Person, max_retries=0)  # type: ignore[arg-type]

    assert (await asyncio.to_thread(sync_call)).model_dump() == expected.model_dump()
    sent = gateway.fake.last_request.body
    assert sent["tool_choice"]["function"]["name"] == "Person" and sent["tools"][0]["function"]["name"] == "Person"
    async with openai.AsyncOpenAI(base_url=gateway.url, api_key=gateway.token, max_retries=0) as sdk:
        person = await instructor.from_openai(sdk).chat.completions.create(
            model=CONFIGURATION, messages=MESSAGES, response_model=Person, max_retries=0)  # type: ignore[arg-type]
    assert person.model_dump() == expected.model_dump()
