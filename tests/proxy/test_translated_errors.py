"""A translated provider (Anthropic through litellm) fails the way the OpenAI path does: the same statuses,
classes, Retry-After and messages for error answers and transport failures, and configuration tests that name
the cause; error answers sent as server-sent events keep their message on both paths."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.factories import ApiUser, make_configuration, make_user
from tests.fakes.anthropic_upstream import DEFAULT_ANTHROPIC_KEY, FakeAnthropic, start_anthropic_upstream
from tests.fakes.openai_upstream import FakeOpenAI

from .conftest import MESSAGES, openai_config

CONTEXT = "prompt is too long: 250000 tokens > 200000 maximum"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Upstreams that hang time out within a second."""
    return settings.model_copy(update={"upstream_timeout_s": 1.0, "test_timeout_s": 1.0})


@pytest.fixture
async def claude(aiohttp_server: Any) -> FakeAnthropic:
    return await start_anthropic_upstream(aiohttp_server)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def anthropic_config(client: TestClient, user: ApiUser, base_url: str, **fields: Any) -> dict[str, Any]:
    return await make_configuration(client, user, provider="anthropic", model="claude-sonnet-4-5",
                                    base_url=base_url, api_key=DEFAULT_ANTHROPIC_KEY, **fields)


async def failure(client: TestClient, user: ApiUser, *, stream: bool = False) -> tuple[int, dict[str, Any], Any]:
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "x", "messages": MESSAGES, "max_tokens": 20, "stream": stream})
    assert resp.status >= 400, await resp.text()
    return resp.status, (await resp.json())["error"], resp.headers


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("step", "status", "type_", "message"), [
    ({"status": 401}, 401, "authentication_error", "invalid x-api-key"),
    ({"status": 403}, 403, "permission_error", None),
    ({"status": 429, "retry_after": "7"}, 429, "rate_limit_error", None),
    ({"status": 529}, 529, "overloaded_error", "Overloaded"),
    ({"status": 529, "sse_errors": True}, 529, "overloaded_error", "Overloaded"),
    ({"status": 400, "error_message": CONTEXT}, 400, "invalid_request_error", CONTEXT),
])
async def test_error_answers_keep_status_type_message_and_retry_after(
        client: TestClient, user: ApiUser, claude: FakeAnthropic, stream: bool, step: dict[str, Any], status: int,
        type_: str, message: str | None) -> None:
    await anthropic_config(client, user, claude.url)
    claude.script([step])
    got_status, error, headers = await failure(client, user, stream=stream)
    assert (got_status, error["type"]) == (status, type_)
    assert error["message"] == (message or claude.behaviour.error_message or error["message"])
    assert "The upstream answered HTTP" not in error["message"]
    assert headers.get("Retry-After") == step.get("retry_after")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("failure_kind", ["refused", "dns", "timeout"])
async def test_transport_failures_match_the_openai_path(
        client: TestClient, claude: FakeAnthropic, fake: FakeOpenAI, stream: bool, failure_kind: str) -> None:
    answers = []
    for provider in ("anthropic", "openai"):
        user = await make_user(client)
        base = {"refused": f"http://127.0.0.1:{closed_port()}", "dns": "http://no-such-host.invalid",
                "timeout": claude.url if provider == "anthropic" else fake.root_url}[failure_kind]
        claude.behaviour.hang = fake.behaviour.hang = failure_kind == "timeout"
        if provider == "anthropic":
            await anthropic_config(client, user, base, name="primary")
        else:
            await openai_config(client, user, fake, name="primary", base_url=base + "/v1")
        answers.append(await failure(client, user, stream=stream))
    (status, error, _), (openai_status, openai_error, _) = answers
    assert (status, error) == (openai_status, openai_error)
    assert status == {"refused": 502, "dns": 502, "timeout": 504}[failure_kind]


@pytest.mark.parametrize(("base_url", "expected"), [
    ("http://no-such-host.invalid", "Unreachable: cannot resolve host no-such-host.invalid"),
    (f"http://127.0.0.1:{closed_port()}", "Unreachable: connection to 127.0.0.1 refused or failed"),
])
async def test_configuration_tests_name_the_cause(client: TestClient, user: ApiUser, base_url: str,
                                                  expected: str) -> None:
    config = await anthropic_config(client, user, base_url)
    resp = await client.post(f"/api/llm-configurations/{config['id']}/test", headers=user.headers)
    body = await resp.json()
    assert (body["status"], body["message"]) == ("unreachable", expected)


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_compatible_error_sent_as_an_event_keeps_its_message(
        client: TestClient, user: ApiUser, fake: FakeOpenAI, stream: bool) -> None:
    await openai_config(client, user, fake)
    fake.script([{"status": 500, "sse_errors": True, "error_message": "The model produced invalid output"}])
    resp = await client.post("/v1/responses", headers=user.headers, json={"model": "x", "input": "hi",
                                                                           "stream": stream})
    error = (await resp.json())["error"]
    assert (resp.status, error["message"], error["code"]) == (500, "The model produced invalid output",
                                                              "server_error")
