"""The usage the gateway asks for on a client's behalf (stream_options.include_usage) never reaches a client
that did not ask, wherever the upstream puts it, and is still what the usage records count."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.factories import ApiUser
from tests.fakes.openai_upstream import FakeOpenAI

from .conftest import MESSAGES, openai_config
from .test_usage import wait_for_requests


async def events(client: TestClient, user: ApiUser, **body: Any) -> list[dict[str, Any]]:
    """The JSON events of a streamed chat completion, as a client receives them."""
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "x", "messages": MESSAGES, "stream": True, **body})
    assert resp.status == 200, await resp.text()
    text = await resp.read()
    assert text.rstrip().endswith(b"data: [DONE]")
    return [orjson.loads(line[6:]) for line in text.splitlines() if line.startswith(b"data: {")]


@pytest.mark.parametrize("where", ["own", "empty_delta", "last"])
async def test_usage_hidden_unless_asked(client: TestClient, user: ApiUser, fake: FakeOpenAI, where: str) -> None:
    fake.behaviour.usage_chunk = where  # type: ignore[assignment]
    await openai_config(client, user, fake)
    received = await events(client, user)
    assert fake.last_request.body["stream_options"] == {"include_usage": True}
    assert [e for e in received if "usage" in e] == []
    assert "".join(c["delta"].get("content") or "" for e in received for c in e["choices"]) == fake.behaviour.content
    assert [c["finish_reason"] for e in received for c in e["choices"] if c["finish_reason"]] == ["stop"]
    # Nothing is left of a chunk that only carried the usage.
    assert all(e["choices"] for e in received)
    totals = (await wait_for_requests(client, user, 1))["totals"]
    assert (totals["prompt_tokens"], totals["completion_tokens"]) == (fake.behaviour.prompt_tokens,
                                                                      fake.behaviour.completion_tokens)
    asked = await events(client, user, stream_options={"include_usage": True})
    assert [e["usage"]["prompt_tokens"] for e in asked if e.get("usage")] == [fake.behaviour.prompt_tokens]
