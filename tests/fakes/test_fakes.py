"""The fake upstreams speak their providers' wire formats, checked with real clients (openai SDK, litellm, aiohttp)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.waiting import settled

from .anthropic_upstream import DEFAULT_ANTHROPIC_KEY, FakeAnthropic, start_anthropic_upstream
from .openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI, start_openai_upstream

KEY = DEFAULT_OPENAI_KEY
WRONG_KEY = "sk-wrong-key-that-is-not-accepted-42"
MESSAGES = [{"role": "user", "content": "hi"}]
REPO_ROOT = Path(__file__).resolve().parents[2]


def _client(fake: FakeOpenAI, key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.url, api_key=key, max_retries=0)


async def _sse_frames(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[float, bytes]]:
    """Yield (arrival time, frame) for each complete SSE frame, as it arrives."""
    buffer = b""
    async for data in resp.content.iter_any():
        buffer += data
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            yield time.monotonic(), frame


# -- OpenAI ------------------------------------------------------------------------------------------------------


async def test_openai_chat_non_streamed_with_sdk(aiohttp_server: Any) -> None:
    fake = await start_openai_upstream(aiohttp_server, prompt_tokens=5, completion_tokens=3)
    async with _client(fake) as client:
        result = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-")
    assert result.model == "gpt-4o-mini"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == fake.behaviour.content
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (5, 3, 8)
    rec = fake.last_request
    assert (rec.method, rec.path, rec.status) == ("POST", "/v1/chat/completions", 200)
    assert rec.completed and not rec.stream and not rec.client_disconnected
    assert rec.body == {"model": "gpt-4o-mini", "messages": MESSAGES}
    same_key = rec.api_key == KEY
    assert same_key, "the fake recorded a different key than the one sent"
    assert rec.finished_at is not None and rec.finished_at >= rec.started_at
    assert fake.open_requests == 0 and fake.peak_open_requests == 1


async def test_openai_chat_stream_usage_only_when_asked(aiohttp_server: Any) -> None:
    fake = await start_openai_upstream(aiohttp_server, chunks=4)
    async with _client(fake) as client:
        plain = [c async for c in await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)]
        counted = [
            c
            async for c in await client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        ]
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-4o" for c in plain + counted)
    assert plain[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in plain) == fake.behaviour.content
    assert [c.choices[0].finish_reason for c in plain][-1] == "stop"
    assert len(plain) == 1 + 4 + 1  # role, content deltas, finish
    assert all(c.usage is None for c in plain)

    assert len(counted) == len(plain) + 1
    assert counted[-1].choices == []
    assert counted[-1].usage is not None and counted[-1].usage.total_tokens == 18
    assert all(c.usage is None for c in counted[:-1])
    assert [r.completed for r in fake.requests] == [True, True]
    assert all(len(r.chunk_times) == len(f) + 1 for r, f in zip(fake.requests, (plain, counted)))  # + [DONE]


async def test_openai_stream_wire_format(aiohttp_server: Any) -> None:
    fake = await start_openai_upstream(aiohttp_server, chunks=2)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        async with session.post(f"{fake.url}/chat/completions", json=body) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            raw = await resp.read()
    frames = raw.split(b"\n\n")
    assert frames[-1] == b"" and frames[-2] == b"data: [DONE]"
    assert all(f.startswith(b"data: ") for f in frames[:-1])
    chunks = [orjson.loads(f[len(b"data: ") :]) for f in frames[:-2]]
    assert len({c["id"] for c in chunks}) == 1
    assert "usage" not in chunks[0]  # the null usage key appears only when usage was asked for


async def test_openai_wrong_key_is_401_with_openai_envelope(aiohttp_server: Any) -> None:
    fake = await start_openai_upstream(aiohttp_server)
    async with _client(fake, WRONG_KEY) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key" and caught.value.type == "invalid_request_error"
    leaked = WRONG_KEY in caught.value.message
    assert not leaked, "the 401 message must mask the key like OpenAI does"

    async with aiohttp.ClientSession() as session, session.get(f"{fake.url}/models") as resp:
        assert resp.status == 401
        error = (await resp.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert fake.pending_steps == 0 and len(fake.requests) == 2


async def test_openai_echo_key_in_error(aiohttp_server: Any) -> None:
    fake = await start_openai_upstream(aiohttp_server, status=500, echo_key_in_error=True)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        async with session.post(f"{fake.url}/chat/completions", json={"model": "m", "messages": MESSAGES}) as resp:
            text = await resp.text()
    assert resp.status == 500
    echoed = KEY in text
    assert echoed, "echo_key_in_error must put the received key in the error body"


async def test_openai_scripted_statuses_then_behaviour(aiohttp_server: Any) -> None:
    fake = await start_openai_upstream(aiohttp_server)
    fake.script([500, {"status": 429, "retry_after": "7"}, 402, 404, 400, 503, 200])
    fake.behaviour.content = "after the script"
    seen: list[tuple[int, str | None, Any]] = []
    chat = {"model": "gpt-x", "messages": MESSAGES}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        for _ in range(8):
            async with session.post(f"{fake.url}/chat/completions", json=chat) as resp:
                seen.append((resp.status, resp.headers.get("Retry-After"), await resp.json()))
    assert [s for s, _, _ in seen] == [500, 429, 402, 404, 400, 503, 200, 200]
    assert seen[1][1] == "7" and seen[0][1] is None
    codes = [body["error"]["code"] for _, _, body in seen[:6]]
    types = [body["error"]["type"] for _, _, body in seen[:6]]
    assert codes == [None, "rate_limit_exceeded", "insufficient_quota", "model_not_found", None, None]
    assert types[0] == types[5] == "server_error" and types[4] == "invalid_request_error"
    assert "gpt-x" in seen[3][2]["error"]["message"]
    assert seen[7][2]["choices"][0]["message"]["content"] == "after the script"
    assert fake.pending_steps == 0

    fake.reset()
    assert fake.requests == [] and fake.behaviour.content != "after the script"


async def test_openai_chunk_delay_spaces_the_stream(aiohttp_server: Any) -> None:
    delay = 0.05
    fake = await start_openai_upstream(aiohttp_server, chunks=4, chunk_delay_s=delay)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        async with session.post(f"{fake.url}/chat/completions", json=body) as resp:
            arrivals = [t async for t, _ in _sse_frames(resp)]
    assert len(arrivals) == 1 + 4 + 1 + 1  # role, deltas, finish, [DONE]
    # Frames arrive spread out, a chunk delay apart, not buffered into one lump (median: robust to jitter).
    gaps = sorted(b - a for a, b in pairwise(arrivals))
    assert gaps[len(gaps) // 2] >= delay * 0.8, gaps
    assert arrivals[-1] - arrivals[0] >= delay * (len(arrivals) - 1) * 0.9
    sent = fake.last_request.chunk_times
    assert min(b - a for a, b in pairwise(sent)) >= delay * 0.9


async def test_openai_delay_before_headers(aiohttp_server: Any) -> None:
    fake = await start_openai_upstream(aiohttp_server, delay_s=0.1)
    async with _client(fake) as client:
        started = time.monotonic()
        await client.models.list()
        assert time.monotonic() - started >= 0.09


async def test_openai_client_disconnect_mid_stream_is_recorded(aiohttp_server: Any) -> None:
    fake = await start_openai_upstream(aiohttp_server, chunks=10, chunk_delay_s=0.05)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        async with session.post(f"{fake.url}/chat/completions", json=body) as resp:
            async for _ in _sse_frames(resp):
                assert fake.open_requests == 1
                break
            resp.close()  # drop the connection mid-stream
    rec = fake.last_request
    assert await settled(lambda: rec.finished_at is not None, timeout=30)
    assert rec.client_disconnected and not rec.completed
    assert len(rec.chunk_times) < 10
    assert fake.open_requests == 0


async def test_openai_hang_until_client_gives_up(aiohttp_server: Any) -> None:
    fake = await start_openai_upstream(aiohttp_server, hang=True)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        with pytest.raises(asyncio.TimeoutError):
            await session.get(f"{fake.url}/models", timeout=aiohttp.ClientTimeout(total=0.2))
    rec = fake.last_request
    assert await settled(lambda: rec.finished_at is not None, timeout=30)
    assert rec.client_disconnected and rec.status is None


async def test_openai_hang_does_not_block_server_shutdown() -> None:
    async with FakeOpenAI(hang=True) as fake:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
            pending = asyncio.ensure_future(session.get(f"{fake.url}/models"))
            assert await settled(lambda: fake.open_requests == 1, timeout=30)
            started = time.monotonic()
            await fake.close()
            assert time.monotonic() - started < 30  # a hang that blocked shutdown would block it for good
            with pytest.raises(aiohttp.ClientError):
                await pending


async def test_openai_garbage_modes(aiohttp_server: Any) -> None:
    fake = await start_openai_upstream(aiohttp_server)
    chat = {"model": "gpt-4o-mini", "messages": MESSAGES}
    stream = {**chat, "stream": True}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        fake.script([{"garbage": "non_json"}])
        async with session.post(f"{fake.url}/chat/completions", json=chat) as resp:
            assert resp.status == 200 and resp.content_type == "application/json"
            with pytest.raises(ValueError):
                orjson.loads(await resp.read())

        fake.script([{"garbage": "truncated_sse"}])
        async with session.post(f"{fake.url}/chat/completions", json=stream) as resp:
            raw = await resp.read()  # a clean HTTP end...
        assert raw.startswith(b"data: {") and b"[DONE]" not in raw and b'"finish_reason":"stop"' not in raw
        assert not fake.last_request.completed

        fake.script([{"garbage": "reset"}])
        with pytest.raises(aiohttp.ClientError):
            async with session.post(f"{fake.url}/chat/completions", json=stream) as resp:
                await resp.read()

        fake.script([{"garbage": "reset"}])
        with pytest.raises(aiohttp.ClientError):
            async with session.post(f"{fake.url}/chat/completions", json=chat) as resp:
                await resp.read()

    async with _client(fake) as client:
        fake.script([{"garbage": "non_json"}])
        with pytest.raises((openai.APIError, ValueError)):  # this SDK lets the JSONDecodeError through
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


async def test_openai_other_endpoints_with_sdk(aiohttp_server: Any) -> None:
    fake = await start_openai_upstream(aiohttp_server, chunks=3)
    async with _client(fake) as client:
        completion = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
        assert completion.object == "text_completion" and completion.choices[0].text == fake.behaviour.content
        assert completion.usage is not None and completion.usage.total_tokens == 18
        pieces = [c async for c in await client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True, stream_options={"include_usage": True})]
        assert "".join(c.choices[0].text for c in pieces if c.choices) == fake.behaviour.content
        assert pieces[-1].usage is not None and pieces[-1].choices == []

        # The SDK asks for base64 unless told otherwise, and decodes it.
        embedded = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        assert fake.last_request.body["encoding_format"] == "base64"
        assert [len(e.embedding) for e in embedded.data] == [8, 8]
        assert embedded.usage.prompt_tokens == embedded.usage.total_tokens == 11
        floats = await client.embeddings.create(
            model="text-embedding-3-small", input="a", encoding_format="float", dimensions=4
        )
        assert floats.data[0].embedding == pytest.approx(embedded.data[0].embedding[:4], abs=1e-6)

        response = await client.responses.create(model="gpt-4.1", input="hi")
        assert response.object == "response" and response.status == "completed"
        assert response.output_text == fake.behaviour.content
        assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (11, 7)
        events = [e async for e in await client.responses.create(model="gpt-4.1", input="hi", stream=True)]
        assert events[0].type == "response.created" and events[-1].type == "response.completed"
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == fake.behaviour.content

        models = await client.models.list()
        assert [m.id for m in models.data] == list(fake.behaviour.models)


async def test_openai_missing_parameter_is_400(aiohttp_server: Any) -> None:
    fake = await start_openai_upstream(aiohttp_server)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        async with session.post(f"{fake.url}/chat/completions", json={"model": "gpt-4o-mini"}) as resp:
            error = (await resp.json())["error"]
        assert resp.status == 400 and error["param"] == "messages" and error["type"] == "invalid_request_error"
        async with session.post(f"{fake.url}/chat/completions", data=b"{not json") as resp:
            assert resp.status == 400


async def test_openai_counts_concurrent_requests(aiohttp_server: Any) -> None:
    fake = await start_openai_upstream(aiohttp_server, delay_s=0.1)
    async with _client(fake) as client:
        await asyncio.gather(*(client.models.list() for _ in range(5)))
    assert fake.peak_open_requests == 5 and fake.open_requests == 0


async def test_openai_standalone_process() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.openai_upstream", "--port", "0", "--key", "sk-standalone-key-000001",
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = re.search(r"(http://\S+/v1)", line)
        assert match, line
        assert "sk-standalone" not in line
        client = openai.AsyncOpenAI(base_url=match.group(1), api_key="sk-standalone-key-000001", max_retries=0)
        async with client:
            result = await client.chat.completions.create(model="bench", messages=MESSAGES)
        assert result.choices[0].message.content
    finally:
        proc.terminate()
        await proc.wait()


# -- Anthropic ---------------------------------------------------------------------------------------------------

ANTHROPIC_HEADERS = {"x-api-key": DEFAULT_ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
ANTHROPIC_BODY = {"model": "claude-3-5-sonnet-20240620", "max_tokens": 64, "messages": MESSAGES}


async def test_anthropic_message_non_streamed(aiohttp_server: Any) -> None:
    fake = await start_anthropic_upstream(aiohttp_server, prompt_tokens=9, completion_tokens=4)
    async with aiohttp.ClientSession(headers=ANTHROPIC_HEADERS) as session:
        async with session.post(fake.messages_url, json=ANTHROPIC_BODY) as resp:
            message = await resp.json()
    assert resp.status == 200
    assert message["id"].startswith("msg_") and message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": fake.behaviour.content}]
    assert message["model"] == ANTHROPIC_BODY["model"] and message["stop_reason"] == "end_turn"
    assert (message["usage"]["input_tokens"], message["usage"]["output_tokens"]) == (9, 4)
    assert fake.last_request.body == ANTHROPIC_BODY


async def test_anthropic_stream_event_sequence(aiohttp_server: Any) -> None:
    fake = await start_anthropic_upstream(aiohttp_server, chunks=3, chunk_delay_s=0.02)
    async with aiohttp.ClientSession(headers=ANTHROPIC_HEADERS) as session:
        async with session.post(fake.messages_url, json={**ANTHROPIC_BODY, "stream": True}) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            frames = [f async for _, f in _sse_frames(resp)]
    events = []
    for frame in frames:
        event_line, data_line = frame.split(b"\n")
        name = event_line.removeprefix(b"event: ").decode()
        data = orjson.loads(data_line.removeprefix(b"data: "))
        assert data["type"] == name
        events.append(data)
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "ping",
        "content_block_delta", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]
    assert events[0]["message"]["usage"]["input_tokens"] == 11
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == fake.behaviour.content
    assert events[7]["delta"]["stop_reason"] == "end_turn" and events[7]["usage"]["output_tokens"] == 7
    assert fake.last_request.completed and len(fake.last_request.chunk_times) == 9


async def test_anthropic_errors(aiohttp_server: Any) -> None:
    fake = await start_anthropic_upstream(aiohttp_server)
    async with aiohttp.ClientSession() as session:
        wrong = {**ANTHROPIC_HEADERS, "x-api-key": WRONG_KEY}
        async with session.post(fake.messages_url, json=ANTHROPIC_BODY, headers=wrong) as resp:
            body = await resp.json()
        assert resp.status == 401 and body["type"] == "error" and body["error"]["type"] == "authentication_error"
        leaked = WRONG_KEY in str(body)
        assert not leaked

        unversioned = {"x-api-key": DEFAULT_ANTHROPIC_KEY}
        async with session.post(fake.messages_url, json=ANTHROPIC_BODY, headers=unversioned) as resp:
            assert resp.status == 400  # no anthropic-version

        fake.script([{"status": 429, "retry_after": "3"}, 529])
        async with session.post(fake.messages_url, json=ANTHROPIC_BODY, headers=ANTHROPIC_HEADERS) as resp:
            assert (resp.status, resp.headers["retry-after"]) == (429, "3")
            assert (await resp.json())["error"]["type"] == "rate_limit_error"
        async with session.post(fake.messages_url, json=ANTHROPIC_BODY, headers=ANTHROPIC_HEADERS) as resp:
            assert resp.status == 529 and (await resp.json())["error"]["type"] == "overloaded_error"


# litellm's own types trip a pydantic UserWarning when first built; that is litellm's, not the fake's.
@pytest.mark.filterwarnings("ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning")
@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_through_litellm(aiohttp_server: Any, stream: bool) -> None:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before the import: no price-map download
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    import litellm

    fake = await start_anthropic_upstream(aiohttp_server, chunks=3)
    response = await litellm.acompletion(
        model="anthropic/claude-3-5-sonnet-20240620",
        api_base=fake.url,  # the bare root: litellm appends /v1/messages
        api_key=DEFAULT_ANTHROPIC_KEY,
        messages=MESSAGES,
        stream=stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    )
    if stream:
        text, usage = "", None
        async for chunk in response:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            usage = getattr(chunk, "usage", None) or usage
    else:
        text, usage = response.choices[0].message.content, response.usage
    assert text == fake.behaviour.content
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (11, 7)
    rec = fake.last_request
    assert rec.path == "/v1/messages" and rec.stream is stream and rec.completed
    assert rec.headers.get("anthropic-version")


async def test_anthropic_standalone_context_manager() -> None:
    async with FakeAnthropic(keys=["sk-ant-own-key-0000001"], content="abc") as fake:
        async with aiohttp.ClientSession() as session:
            headers = {**ANTHROPIC_HEADERS, "x-api-key": "sk-ant-own-key-0000001"}
            async with session.post(fake.messages_url, json=ANTHROPIC_BODY, headers=headers) as resp:
                assert (await resp.json())["content"][0]["text"] == "abc"
            async with session.get(f"{fake.url}/_fake/requests") as resp:
                records = await resp.json()
    assert [r["path"] for r in records] == ["/v1/messages"]
