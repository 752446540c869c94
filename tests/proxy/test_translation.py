"""Anthropic's Messages API through litellm's translation, both ways, against a fake that speaks the real wire
format; litellm stays unimported for OpenAI-compatible traffic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.factories import ApiUser, make_configuration
from tests.fakes.anthropic_upstream import DEFAULT_ANTHROPIC_KEY, FakeAnthropic, start_anthropic_upstream
from tests.fakes.openai_upstream import FakeOpenAI

from .conftest import MESSAGES, openai_config, sdk

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def claude(aiohttp_server: Any) -> FakeAnthropic:
    """A fake Anthropic upstream."""
    return await start_anthropic_upstream(aiohttp_server, prompt_tokens=21, completion_tokens=9)


async def anthropic_config(client: TestClient, user: ApiUser, fake: FakeAnthropic, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"provider": "anthropic", "model": "claude-sonnet-4-5", "base_url": fake.url,
                              "api_key": DEFAULT_ANTHROPIC_KEY}
    values.update(fields)
    return await make_configuration(client, user, **values)


@pytest.mark.parametrize(("extra", "param", "code"), [
    ({"messages": "hi"}, "messages", "invalid_type"),
    ({"messages": []}, "messages", "invalid_type"),
    ({"messages": ["hi"]}, "messages", "invalid_type"),
    ({"logit_bias_extra": 1}, "logit_bias_extra", "unsupported_parameter"),
])
async def test_a_malformed_translated_request_is_a_400_naming_the_field(
        client: TestClient, user: ApiUser, claude: FakeAnthropic, extra: dict[str, Any], param: str, code: str) -> None:
    await anthropic_config(client, user, claude)
    seen = len(claude.requests)
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "x", "messages": MESSAGES, "max_tokens": 10, **extra})
    error = (await resp.json())["error"]
    assert resp.status == 400, error
    assert (error["param"], error["code"]) == (param, code)
    assert len(claude.requests) == seen  # nothing reached the upstream


async def test_a_request_the_translation_refuses_does_not_fail_over(
        client: TestClient, user: ApiUser, claude: FakeAnthropic, fake: FakeOpenAI) -> None:
    # DESIGN §5: never fail over on a 4xx that says the request is wrong; another key will not fix it. Refused
    # by the translation before anything went upstream: no fallback, no cooldown, no key error counted.
    fallback = await openai_config(client, user, fake)
    await anthropic_config(client, user, claude, is_default=True, fallback_ids=[fallback["id"]])
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "x", "messages": [], "max_tokens": 10})
    error = (await resp.json())["error"]
    assert resp.status == 400, error
    assert (error["param"], error["code"]) == ("messages", "invalid_type")
    assert resp.headers["X-LLM-Gateway-Attempts"] == "1"
    assert not fake.requests and not claude.requests
    metrics = await (await client.get("/metrics")).text()
    assert 'llm_gateway_upstream_attempts_total{outcome="key_error"} 0.0' in metrics
    assert "llm_gateway_failovers_total 0.0" in metrics
    assert "llm_gateway_cooldowns_total 0.0" in metrics


async def test_translated_both_ways(client: TestClient, user: ApiUser, claude: FakeAnthropic) -> None:
    config = await anthropic_config(client, user, claude)
    async with sdk(client, user) as api:
        raw = await api.chat.completions.with_raw_response.create(model="x", messages=MESSAGES, max_tokens=50,
                                                                  temperature=0.2)
        result = raw.parse()
        assert result.choices[0].message.content == claude.behaviour.content
        assert result.choices[0].finish_reason == "stop"
        assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (21, 9)  # type: ignore[union-attr]
        assert raw.headers["X-LLM-Configuration-Id"] == config["id"]
        sent = claude.last_request
        assert sent.path == "/v1/messages" and sent.api_key == DEFAULT_ANTHROPIC_KEY
        assert sent.body["model"] == "claude-sonnet-4-5" and sent.body["max_tokens"] == 50
        assert sent.body["messages"][0]["role"] == "user"

        chunks = [c async for c in await api.chat.completions.create(model="x", messages=MESSAGES, stream=True)]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == claude.behaviour.content
        assert all(c.usage is None for c in chunks)  # not asked for, not shown
        assert claude.last_request.stream

        asked = [c async for c in await api.chat.completions.create(
            model="x", messages=MESSAGES, stream=True, stream_options={"include_usage": True})]
    assert asked[-1].usage is not None and asked[-1].usage.completion_tokens == 9


async def test_errors_fail_over_and_are_scrubbed(client: TestClient, user: ApiUser, claude: FakeAnthropic,
                                                 fake: FakeOpenAI) -> None:
    backup = await openai_config(client, user, fake, is_default=False)
    await anthropic_config(client, user, claude, is_default=True, fallback_ids=[backup["id"]])
    claude.script([529])
    async with sdk(client, user) as api:
        raw = await api.chat.completions.with_raw_response.create(model="x", messages=MESSAGES)
    assert raw.headers["X-LLM-Configuration-Id"] == backup["id"]
    claude.behaviour.status = 400
    claude.behaviour.echo_key_in_error = True
    resp = await client.post("/v1/chat/completions", headers=user.headers, json={"model": "x", "messages": MESSAGES})
    assert resp.status == 400  # the request is wrong: no failover
    text = await resp.text()
    assert DEFAULT_ANTHROPIC_KEY not in text and "Invalid request" in text
    claude.behaviour.status = 200
    claude.behaviour.echo_key_in_error = False
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "x", "messages": MESSAGES, "fallbacks": ["gpt-4o"]})
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "fallbacks"
    resp = await client.post("/v1/embeddings", headers=user.headers, json={"model": "x", "input": "hi"})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "endpoint_not_supported"


async def test_stream_error_before_first_byte_fails_over(client: TestClient, user: ApiUser, claude: FakeAnthropic,
                                                         fake: FakeOpenAI) -> None:
    backup = await openai_config(client, user, fake, is_default=False)
    await anthropic_config(client, user, claude, is_default=True, fallback_ids=[backup["id"]])
    claude.script([{"status": 429, "retry_after": "2"}])
    async with sdk(client, user) as api:
        raw = await api.chat.completions.with_raw_response.create(model="x", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
    assert text == fake.behaviour.content
    assert raw.headers["X-LLM-Gateway-Attempts"] == "2"


def test_litellm_not_imported_for_openai_compatible_traffic(tmp_path: Path, key_ring: str) -> None:
    """In a fresh interpreter: serve OpenAI-compatible requests (streamed and not), then look at sys.modules."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "PROBE_KEYS": key_ring,
           "PROBE_DB": str(tmp_path / "probe.db")}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "served=2 litellm=False", result.stdout[-2000:]


PROBE = '''
import asyncio, os, sys, uuid
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from gateway.accounts.users import create_user, issue_token
from gateway.app import create_app
from gateway.configurations.crud import create_configuration
from gateway.settings import Settings
from gateway.store import migrate
from gateway.store.changes import Change
from gateway.web.appkeys import CHANGES, KEYRING, POLICY, SESSIONMAKER
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI
import aiohttp

URL = "sqlite+aiosqlite:///" + os.environ["PROBE_DB"]

async def main(url):
    fake = await FakeOpenAI().start()
    settings = Settings(database_url=url, encryption_keys=SecretStr(os.environ["PROBE_KEYS"]),
                        allow_private_base_urls=True)
    app = create_app(settings)
    server = TestServer(app)
    await server.start_server()
    async with app[SESSIONMAKER]() as session:
        user = await create_user(session, name="probe")
        _, token = await issue_token(session, user_id=user.id)
        await create_configuration(session, keyring=app[KEYRING], policy=app[POLICY], user_id=user.id,
                                   name="c", provider="openai", model="gpt-4o-mini", api_key=DEFAULT_OPENAI_KEY,
                                   base_url=fake.url)
        await app[CHANGES].commit(session, Change("configurations", str(user.id)))
    served = 0
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer " + token}) as http:
        for stream in (False, True):
            async with http.post(server.make_url("/v1/chat/completions"),
                                 json={"model": "c", "messages": [{"role": "user", "content": "hi"}],
                                       "stream": stream}) as resp:
                body = await resp.read()
                served += resp.status == 200
                if resp.status != 200:
                    print(f"stream={stream} status={resp.status} body={body[:300]!r}")
    await server.close()
    await fake.close()
    print(f"served={served} litellm={'litellm' in sys.modules}")

migrate.upgrade(URL)
asyncio.run(main(URL))
'''
