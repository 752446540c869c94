"""Forwarding to OpenAI-compatible upstreams: bytes in, bytes out, only `model` and the key changed."""

from __future__ import annotations

import asyncio
import io
import time

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.web.appkeys import SETTINGS, USAGE
from tests.factories import ApiUser
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI
from tests.waiting import settled

from .conftest import MESSAGES, openai_config, sdk, sync_sdk


async def test_chat_non_streamed_async_sdk(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    config = await openai_config(client, user, fake, model="gpt-4o")
    async with sdk(client, user) as api:
        raw = await api.chat.completions.with_raw_response.create(model="anything", messages=MESSAGES)
    result = raw.parse()
    assert result.choices[0].message.content == fake.behaviour.content
    assert raw.headers["X-LLM-Configuration-Id"] == config["id"]
    assert raw.headers["X-LLM-Gateway-Attempts"] == "1"
    sent = fake.last_request
    assert sent.body["model"] == "gpt-4o"  # the configuration's model, not the client's
    assert sent.body["messages"] == MESSAGES
    assert sent.api_key == DEFAULT_OPENAI_KEY
    assert user.token not in str(sent.headers)  # the gateway token never travels upstream


async def test_chat_sync_sdk_streamed_and_not(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)

    def call() -> tuple[str, str]:
        with sync_sdk(client, user) as api:
            whole = api.chat.completions.create(model="x", messages=MESSAGES).choices[0].message.content
            pieces = [c.choices[0].delta.content or "" for c in
                      api.chat.completions.create(model="x", messages=MESSAGES, stream=True) if c.choices]
        return whole or "", "".join(pieces)

    whole, streamed = await asyncio.to_thread(call)
    assert whole == streamed == fake.behaviour.content


async def test_stream_usage_chunk_hidden_unless_asked(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    async with sdk(client, user) as api:
        chunks = [c async for c in await api.chat.completions.create(model="x", messages=MESSAGES, stream=True)]
        assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
        # The gateway asked the upstream for usage on the client's behalf.
        assert fake.last_request.body["stream_options"] == {"include_usage": True}
        asked = [c async for c in await api.chat.completions.create(
            model="x", messages=MESSAGES, stream=True, stream_options={"include_usage": True})]
    assert asked[-1].usage is not None and asked[-1].usage.prompt_tokens == fake.behaviour.prompt_tokens


@pytest.mark.parametrize("endpoint", ["completions", "embeddings", "responses"])
async def test_other_endpoints(client: TestClient, user: ApiUser, fake: FakeOpenAI, endpoint: str) -> None:
    await openai_config(client, user, fake, model="upstream-model")
    async with sdk(client, user) as api:
        if endpoint == "completions":
            result = await api.completions.create(model="x", prompt="hi")
            assert result.choices[0].text == fake.behaviour.content
        elif endpoint == "embeddings":
            result = await api.embeddings.create(model="x", input=["a", "b"])
            assert len(result.data) == 2
        else:
            result = await api.responses.create(model="x", input="hi")
            assert result.output_text == fake.behaviour.content
    assert fake.last_request.path == f"/v1/{endpoint}"
    assert fake.last_request.body["model"] == "upstream-model"


async def test_streamed_completions_and_responses(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    async with sdk(client, user) as api:
        text = "".join([c.choices[0].text async for c in await api.completions.create(
            model="x", prompt="hi", stream=True) if c.choices])
        events = [e async for e in await api.responses.create(model="x", input="hi", stream=True)]
    assert text == fake.behaviour.content
    assert events[-1].type == "response.completed"


async def test_unknown_post_path_is_passed_through(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    resp = await client.post("/v1/audio/speech", json={"model": "x", "input": "hi"}, headers=user.headers)
    # The fake has no such endpoint: its own 404 came back through one upstream attempt.
    assert resp.status == 404
    assert resp.headers["X-LLM-Gateway-Attempts"] == "1"
    assert "upstream" in (await resp.json())["error"]["message"]


async def test_models_lists_active_configurations(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake, name="alpha")
    await openai_config(client, user, fake, name="beta", is_active=False)
    async with sdk(client, user) as api:
        models = [m async for m in api.models.list()]
    assert [(m.id, m.owned_by) for m in models] == [("alpha", "custom")]


async def test_stream_chunks_relayed_as_they_arrive(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    fake.behaviour.chunk_delay_s = 0.3
    fake.behaviour.chunks = 2
    arrivals: list[float] = []
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "x", "messages": MESSAGES, "stream": True})
    assert resp.status == 200
    buffer = b""
    async for data in resp.content.iter_any():
        buffer += data
        while b"\n\n" in buffer:
            _, buffer = buffer.split(b"\n\n", 1)
            arrivals.append(time.monotonic())
    upstream_times = fake.last_request.chunk_times
    # The first event reached the client before the upstream even sent its second one.
    assert arrivals[0] < upstream_times[1]
    assert len(arrivals) >= 4


async def test_client_disconnect_cancels_upstream(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    fake.behaviour.chunk_delay_s = 0.2
    fake.behaviour.chunks = 20
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "x", "messages": MESSAGES, "stream": True})
    await resp.content.readuntil(b"\n\n")
    resp.close()  # the client leaves mid-stream
    assert await settled(lambda: fake.last_request.finished_at is not None)
    record = fake.last_request
    assert record.client_disconnected and not record.completed
    assert len(record.chunk_times) < 10


@pytest.mark.parametrize("field", ["api_base", "base_url", "api_key", "extra_headers", "custom_llm_provider",
                                   "litellm_params", "mock_response"])
async def test_routing_fields_refused(client: TestClient, user: ApiUser, fake: FakeOpenAI, field: str) -> None:
    await openai_config(client, user, fake)
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "x", "messages": MESSAGES, field: "http://evil.example"})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["param"] == field and field in error["message"]
    assert fake.requests == []


async def test_body_too_large_and_malformed(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    limit = client.server.app[SETTINGS].max_body_bytes
    big = b'{"model": "x", "messages": [], "pad": "' + b"a" * limit + b'"}'
    resp = await client.post("/v1/chat/completions", data=io.BytesIO(big),
                             headers={**user.headers, "Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["error"]["type"] == "invalid_request_error"
    for bad in (b"{not json", b"[1, 2]"):
        resp = await client.post("/v1/chat/completions", data=bad,
                                 headers={**user.headers, "Content-Type": "application/json"})
        assert resp.status == 400
    assert fake.requests == []


async def test_large_body_under_the_limit_is_forwarded(client: TestClient, user: ApiUser, fake: FakeOpenAI
                                                       ) -> None:
    await openai_config(client, user, fake)
    text = "a" * (3 * 1024 * 1024)
    body = orjson.dumps({"model": "x", "messages": [{"role": "user", "content": text}]})
    resp = await client.post("/v1/chat/completions", data=io.BytesIO(body),
                             headers={**user.headers, "Content-Type": "application/json"})
    assert resp.status == 200
    assert fake.last_request.body["messages"][0]["content"] == text


async def test_upstream_error_is_scrubbed(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    fake.behaviour.status = 400
    fake.behaviour.echo_key_in_error = True
    resp = await client.post("/v1/chat/completions", headers=user.headers, json={"model": "x", "messages": MESSAGES})
    assert resp.status == 400
    text = await resp.text()
    assert DEFAULT_OPENAI_KEY not in text
    assert orjson.loads(text)["error"]["message"]


async def test_requests_need_a_token(client: TestClient, fake: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as session:
        resp = await session.post(client.make_url("/v1/chat/completions"), json={"model": "x"})
        assert resp.status == 401


async def test_one_access_line_per_request(client: TestClient, user: ApiUser, fake: FakeOpenAI,
                                           caplog: pytest.LogCaptureFixture) -> None:
    config = await openai_config(client, user, fake)
    secret_text = "my secret prompt text"
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "x", "messages": [{"role": "user", "content": secret_text}]})
    assert resp.status == 200
    await client.server.app[USAGE].flush()  # access lines are buffered with the usage records
    lines = [line for r in caplog.records if r.name == "gateway.access" for line in r.getMessage().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    for part in (f"request_id={resp.headers['X-LLM-Gateway-Request-Id']}", f"user_id={user.id}",
                 f"configuration_id={config['id']}", "status=200", "attempts=1", "latency_ms="):
        assert part in line
    everything = " ".join(r.getMessage() for r in caplog.records)
    assert secret_text not in everything and user.token not in everything
