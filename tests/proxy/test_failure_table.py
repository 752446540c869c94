"""One failure table for both paths: what the client gets (status, error code), whether the gateway failed over
and whether the configuration was cooled down, for each thing an upstream, the client or the gateway's own
translation worker can do wrong. Each row runs on the translated path (Anthropic through litellm) and, where
the upstream can do the same, on the OpenAI bytes path, and both must give the row's answer.

Every row gives the user two configurations on the same failing fake, the primary falling back to the second,
with a cooldown after one failure: the answer's attempt count says whether it failed over, and a follow-up
request once the fake is healthy again says whether a cooldown was recorded (a cooled primary sends it to the
second configuration, or, both cooled, answers 503 configurations_cooling_down)."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from gateway.web.appkeys import TRANSLATOR
from tests.factories import add_member, make_configuration, make_team, make_team_configuration, make_user
from tests.fakes.anthropic_upstream import DEFAULT_ANTHROPIC_KEY, FakeAnthropic, start_anthropic_upstream
from tests.fakes.openai_upstream import FakeOpenAI, FakeUpstream

from .conftest import MESSAGES, openai_config

TRANSLATED, BYTES = "translated", "bytes"
MALFORMED = [{"role": "user", "content": 123}]  # named by the worker's own check of the messages
UNTRANSLATABLE = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "not-an-image"}}]}]
KILL = "kill the worker"  # a row's behaviour: the translation worker dies while the upstream holds the call
KILL_MID_STREAM = "kill the worker mid-stream"  # ... once the upstream sent its first event


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """One failure cools a configuration down, for a minute; hanging upstreams time out within a second."""
    return settings.model_copy(update={"cooldown_failures": 1, "cooldown_s": 60.0, "upstream_timeout_s": 1.0})


@pytest.fixture
async def claude(aiohttp_server: Any) -> FakeAnthropic:
    return await start_anthropic_upstream(aiohttp_server)


@dataclass(frozen=True)
class Row:
    """What goes wrong (the fake's behaviour, or a worker killed; `openai`: the bytes path's equivalent when it
    differs; `bytes_path` False: it has none) and what both paths must answer: status, error code (None: the
    provider's own, which differs between providers), failover and cooldown."""

    behaviour: dict[str, Any] | str
    status: int
    code: str | None
    failover: bool
    cooldown: bool
    stream: bool = False
    messages: list[dict[str, Any]] = field(default_factory=lambda: MESSAGES)
    openai: dict[str, Any] | None = None  # the bytes path's equivalent, when it is not `behaviour`
    bytes_path: bool = True
    param: str | None = None
    retry_after: str | None = None


ROWS = {
    # A request the translation refuses is the client's; on the bytes path the upstream refuses it (400).
    "conversion error": Row({}, 400, "invalid_value", False, False, messages=MALFORMED, openai={"status": 400},
                            param="messages[0].content"),
    "conversion error, streamed": Row({}, 400, "invalid_value", False, False, stream=True, messages=MALFORMED,
                                      openai={"status": 400}, param="messages[0].content"),
    "litellm refuses to translate": Row({}, 400, "translation_refused", False, False, messages=UNTRANSLATABLE,
                                        openai={"status": 400}),
    "upstream 400": Row({"status": 400}, 400, None, False, False),
    "upstream 404": Row({"status": 404}, 404, None, False, False),
    "upstream 413": Row({"status": 413}, 413, None, False, False),
    "upstream 422": Row({"status": 422}, 422, None, False, False),
    "upstream 400, streamed": Row({"status": 400}, 400, None, False, False, stream=True),
    "upstream 500": Row({"status": 500}, 500, None, True, True),
    "upstream 503, streamed": Row({"status": 503}, 503, None, True, True, stream=True),
    "upstream 429 with Retry-After": Row({"status": 429, "retry_after": "7"}, 429, None, True, True,
                                         retry_after="7"),
    "timeout": Row({"hang": True}, 504, "upstream_timeout", True, True),
    "garbage answer": Row({"garbage": "non_json"}, 502, "upstream_invalid_response", True, True),
    "garbage stream": Row({"garbage": "non_json"}, 502, "upstream_invalid_response", True, True, stream=True),
    "stream cut mid-way": Row({"garbage": "truncated_sse", "chunks": 6}, 200, "upstream_stream_cut", False, True,
                              stream=True),
    "stream reset mid-way": Row({"garbage": "reset", "chunks": 6}, 200, "upstream_connection_error", False, True,
                                stream=True),
    # The gateway's own failure: a clear retryable 503, failed over, never the configuration's fault.
    "worker death": Row(KILL, 503, "translation_unavailable", True, False, bytes_path=False),
    "worker death, streamed": Row(KILL, 503, "translation_unavailable", True, False, stream=True, bytes_path=False),
    "worker death mid-stream": Row(KILL_MID_STREAM, 200, "translation_unavailable", False, False, stream=True,
                                   bytes_path=False),
}


@dataclass
class Outcome:
    status: int
    code: str | None
    param: str | None
    failover: bool
    cooldown: bool
    retry_after: str | None
    upstream_calls: int


async def killing_workers(client: TestClient, fake: FakeUpstream, done: asyncio.Future[Any],
                          mid_stream: bool = False) -> None:
    """SIGKILL the translation worker each time the fake receives a call (or, mid_stream, once the call's first
    content events had the time to reach the client: the fake sends them 0.5 s apart), until `done`."""
    translator = client.server.app[TRANSLATOR]
    seen = len(fake.requests)
    while not done.done():
        pid = translator.worker_pid
        if pid is not None and len(fake.requests) > seen and (
                not mid_stream or len(fake.requests[-1].chunk_times) >= 4):
            seen = len(fake.requests)
            if mid_stream:
                await asyncio.sleep(0.3)
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.02)


def stream_error(body: bytes) -> dict[str, Any] | None:
    """The error event that ended a stream, if any."""
    for line in body.splitlines():
        if line.startswith(b"data: {") and b'"error"' in line:
            error: dict[str, Any] = orjson.loads(line[6:])["error"]
            return error
    return None


async def run_row(client: TestClient, row: Row, path: str, claude: FakeAnthropic, openai_fake: FakeOpenAI
                  ) -> Outcome:
    """Two configurations on one fake (primary → second), the row's failure, then a healthy follow-up."""
    user = await make_user(client)
    fake: FakeUpstream = claude if path == TRANSLATED else openai_fake
    if path == TRANSLATED:
        second = await make_configuration(client, user, provider="anthropic", model="claude-sonnet-4-5",
                                          base_url=claude.url, api_key=DEFAULT_ANTHROPIC_KEY, name="second")
        primary = await make_configuration(client, user, provider="anthropic", model="claude-sonnet-4-5",
                                           base_url=claude.url, api_key=DEFAULT_ANTHROPIC_KEY, name="primary",
                                           fallback_ids=[second["id"]], is_default=True)
    else:
        second = await openai_config(client, user, openai_fake, name="second")
        primary = await openai_config(client, user, openai_fake, name="primary", fallback_ids=[second["id"]],
                                      is_default=True)
    if path == TRANSLATED:
        await client.server.app[TRANSLATOR].ready()  # the worker is up before the row's trouble starts
    behaviour = row.behaviour if path == TRANSLATED or row.openai is None else row.openai
    fake.reset()
    if behaviour == KILL:
        fake.behaviour.hang = True
    elif behaviour == KILL_MID_STREAM:
        fake.behaviour.chunks, fake.behaviour.chunk_delay_s = 6, 0.5
    else:
        assert isinstance(behaviour, dict)
        for name, value in behaviour.items():
            setattr(fake.behaviour, name, value)
    body = {"model": "x", "messages": row.messages, "max_tokens": 20, "stream": row.stream}

    async def exchange() -> tuple[ClientResponse, bytes]:
        resp = await client.post("/v1/chat/completions", headers=user.headers, json=body)
        return resp, await resp.read()  # the killer keeps watching until the answer's end

    call = asyncio.ensure_future(exchange())
    killer = (asyncio.ensure_future(killing_workers(client, fake, call, mid_stream=behaviour == KILL_MID_STREAM))
              if behaviour in (KILL, KILL_MID_STREAM) else None)
    try:
        resp, raw = await asyncio.wait_for(call, 120)
    finally:
        if killer is not None:
            await killer
    error = orjson.loads(raw)["error"] if resp.status >= 400 else stream_error(raw)
    upstream_calls = len(fake.requests)

    fake.reset()
    fake.behaviour.hang = False
    follow = await client.post("/v1/chat/completions", headers=user.headers,
                               json={"model": "x", "messages": MESSAGES, "max_tokens": 20})
    follow_body = await follow.read()
    if follow.status == 503:
        assert orjson.loads(follow_body)["error"]["code"] == "configurations_cooling_down"
        cooled, retry_after = True, follow.headers.get("Retry-After")
    else:
        assert follow.status == 200, follow_body
        cooled, retry_after = follow.headers["X-LLM-Configuration-Id"] != primary["id"], None
    return Outcome(resp.status, error["code"] if error else None, error["param"] if error else None,
                   resp.headers["X-LLM-Gateway-Attempts"] == "2", cooled, retry_after, upstream_calls)


@pytest.mark.parametrize("name", list(ROWS))
async def test_failure_table(client: TestClient, claude: FakeAnthropic, fake: FakeOpenAI, name: str) -> None:
    row = ROWS[name]
    paths = [TRANSLATED, BYTES] if row.bytes_path else [TRANSLATED]
    for path in paths:
        got = await run_row(client, row, path, claude, fake)
        assert (got.status, got.failover, got.cooldown) == (row.status, row.failover, row.cooldown), (path, got)
        if row.code is not None and (path == TRANSLATED or row.openai is None):
            assert got.code == row.code, (path, got)
        if row.param is not None and path == TRANSLATED:
            assert got.param == row.param
        if row.retry_after is not None:
            assert got.retry_after == row.retry_after, (path, got)
        if row.messages is not MESSAGES and path == TRANSLATED:
            assert got.upstream_calls == 0  # refused before anything was sent
        if not row.failover and row.behaviour not in (KILL, KILL_MID_STREAM) and row.messages is MESSAGES:
            assert got.upstream_calls == 1


async def test_one_members_bad_requests_leave_the_shared_configuration_to_the_others(
        client: TestClient, aiohttp_server: Any) -> None:
    """Malformed requests and worker deaths by member A, three of each, then B's call to the same team
    configuration is served by it (one counted failure would have cooled it down): nothing of A's counted."""
    team_key = "sk-ant-team-0000000000000000000001"
    claude = await start_anthropic_upstream(aiohttp_server, keys=(team_key,))
    b, a = await make_user(client), await make_user(client)
    team = await make_team(client, b)
    await add_member(client, b, team, a)
    shared = await make_team_configuration(client, b, team, provider="anthropic", model="claude-sonnet-4-5",
                                           base_url=claude.url, api_key=team_key)
    headers = {**a.headers, "X-LLM-Configuration": shared["id"]}
    translator = client.server.app[TRANSLATOR]
    await translator.ready()
    claude.reset()
    for _ in range(3):
        resp = await client.post("/v1/chat/completions", headers=headers,
                                 json={"model": "x", "messages": MALFORMED, "max_tokens": 20})
        assert resp.status == 400, await resp.text()
    assert claude.requests == []
    claude.behaviour.hang = True
    for _ in range(3):
        call = asyncio.ensure_future(client.post("/v1/chat/completions", headers=headers,
                                                 json={"model": "x", "messages": MESSAGES, "max_tokens": 20}))
        killer = asyncio.ensure_future(killing_workers(client, claude, call))
        resp = await asyncio.wait_for(call, 120)
        await killer
        assert resp.status == 503, await resp.text()
        assert (await resp.json())["error"]["code"] == "translation_unavailable"
        assert resp.headers["Retry-After"] == "1"
    claude.behaviour.hang = False
    resp = await client.post("/v1/chat/completions", headers={**b.headers, "X-LLM-Configuration": shared["id"]},
                             json={"model": "x", "messages": MESSAGES, "max_tokens": 20})
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-LLM-Configuration-Id"] == shared["id"]


async def test_a_worker_death_during_the_half_open_probe_frees_the_probe(
        aiohttp_client: Any, settings: Settings, claude: FakeAnthropic) -> None:
    """A configuration cooled down by its provider is probed by one request at a time; when the gateway's worker
    fails that probe, the probe is given back (neither verdict), so the next request probes it again."""
    client = await aiohttp_client(create_app(settings.model_copy(update={"cooldown_s": 0.2})))
    user = await make_user(client)
    await make_configuration(client, user, provider="anthropic", model="claude-sonnet-4-5", base_url=claude.url,
                             api_key=DEFAULT_ANTHROPIC_KEY)
    chat = {"model": "x", "messages": MESSAGES, "max_tokens": 20}
    claude.script([500])
    resp = await client.post("/v1/chat/completions", headers=user.headers, json=chat)
    assert resp.status == 500, await resp.text()
    await asyncio.sleep(0.3)  # the cooldown is over: the next request is the probe
    claude.behaviour.hang = True
    call = asyncio.ensure_future(client.post("/v1/chat/completions", headers=user.headers, json=chat))
    killer = asyncio.ensure_future(killing_workers(client, claude, call))
    resp = await asyncio.wait_for(call, 120)
    await killer
    assert (resp.status, (await resp.json())["error"]["code"]) == (503, "translation_unavailable")
    claude.behaviour.hang = False
    resp = await client.post("/v1/chat/completions", headers=user.headers, json=chat)
    assert resp.status == 200, await resp.text()


async def test_a_configuration_test_the_worker_fails_says_so(client: TestClient, claude: FakeAnthropic) -> None:
    """A configuration test whose call the worker fails answers with a verdict naming the gateway's worker (not a
    503 after the save, not the provider's fault)."""
    user = await make_user(client)
    config = await make_configuration(client, user, provider="anthropic", model="claude-sonnet-4-5",
                                      base_url=claude.url, api_key=DEFAULT_ANTHROPIC_KEY)
    await client.server.app[TRANSLATOR].ready()
    claude.behaviour.hang = True
    call = asyncio.ensure_future(client.post(f"/api/llm-configurations/{config['id']}/test", headers=user.headers))
    killer = asyncio.ensure_future(killing_workers(client, claude, call))
    resp = await asyncio.wait_for(call, 120)
    await killer
    body = await resp.json()
    assert resp.status == 200, body
    assert body["status"] == "failed" and "translation worker" in body["message"], body
