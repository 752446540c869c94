"""Testing configurations end to end, on SQLite and PostgreSQL, against the fake upstreams: every verdict class,
the stored fields, the audit event, the rate limit, bounded concurrency of test-all, keys never leaking."""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from admin.checks import run_test_on_save
from gateway.configurations.crud import get_configuration
from gateway.store.models import AuditEvent, LLMConfiguration, UsageRecord
from gateway.web.appkeys import SESSIONMAKER
from tests.factories import ApiUser, make_configuration, make_user
from tests.fakes.anthropic_upstream import DEFAULT_ANTHROPIC_KEY, FakeAnthropic, start_anthropic_upstream
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI, start_openai_upstream

MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def fake(aiohttp_server) -> FakeOpenAI:  # type: ignore[no-untyped-def]
    return await start_openai_upstream(aiohttp_server)


async def saved(client: TestClient, user: ApiUser, fake: FakeOpenAI | FakeAnthropic, **fields: Any) -> dict[str, Any]:
    values = {"base_url": fake.url, "api_key": DEFAULT_OPENAI_KEY, **fields}
    return await make_configuration(client, user, **values)


async def row(client: TestClient, user: ApiUser, config_id: str) -> LLMConfiguration:
    async with client.server.app[SESSIONMAKER]() as session:
        return await get_configuration(session, user_id=uuid.UUID(user.id), configuration_id=config_id)


async def audit_events(client: TestClient, user: ApiUser) -> list[AuditEvent]:
    async with client.server.app[SESSIONMAKER]() as session:
        query = select(AuditEvent).where(AuditEvent.user_id == uuid.UUID(user.id)).order_by(AuditEvent.id)
        return list((await session.execute(query)).scalars())


async def run_saved(client: TestClient, user: ApiUser, config_id: str) -> tuple[int, dict[str, Any], str]:
    resp = await client.post(f"/api/llm-configurations/{config_id}/test", headers=user.headers)
    text = await resp.text()
    return resp.status, await resp.json(), text


async def test_unsaved_success_stores_nothing(client: TestClient, fake: FakeOpenAI) -> None:
    user = await make_user(client)
    resp = await client.post("/api/llm-configurations/test", headers=user.headers, json={
        "provider": "openai", "model": "gpt-4o-mini", "api_key": DEFAULT_OPENAI_KEY, "base_url": fake.url})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert set(body) == {"success", "status", "message", "latency_ms", "retry_after_s", "upstream_status"}
    assert body["success"] is True and body["status"] == "success" and body["upstream_status"] == 200
    assert re.fullmatch(r"LLM responding correctly \(\d+ ms\)", body["message"])
    assert isinstance(body["latency_ms"], int) and body["retry_after_s"] is None
    sent = fake.requests_to("/v1/chat/completions")
    assert len(sent) == 1 and sent[0].api_key == DEFAULT_OPENAI_KEY
    assert sent[0].body["max_tokens"] == 5 and len(sent[0].body["messages"]) == 1 and not sent[0].body.get("stream")
    async with client.server.app[SESSIONMAKER]() as session:
        assert (await session.execute(select(LLMConfiguration))).first() is None
        assert (await session.execute(select(AuditEvent))).first() is None
        assert (await session.execute(select(UsageRecord))).first() is None


async def test_unsaved_wrong_key(client: TestClient, fake: FakeOpenAI) -> None:
    user = await make_user(client)
    resp = await client.post("/api/llm-configurations/test", headers=user.headers, json={
        "provider": "openai", "model": "gpt-4o-mini", "api_key": "sk-wrong-0123456789", "base_url": fake.url})
    body = await resp.json()
    assert resp.status == 200
    assert (body["success"], body["status"], body["upstream_status"]) == (False, "failed", 401)
    assert body["message"] == "Invalid API key - please check your key"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"provider": "openai", "model": "m", "api_key": "sk-real-key-123", "extra": 1}, "extra"),
        ({"provider": "nope", "model": "m", "api_key": "sk-real-key-123"}, "provider"),
        ({"provider": "openai", "model": "m", "api_key": "**********"}, "api_key"),
        ({"provider": "openai", "model": "m", "api_key": "sk-real-key-123", "base_url": "http://169.254.169.254/v1"},
         "base_url"),
        ({"provider": "custom", "model": "m", "api_key": "sk-real-key-123"}, "base_url"),
        ({"provider": "openai", "api_key": "sk-real-key-123"}, "model"),
    ],
)
async def test_unsaved_bad_input_is_422_naming_the_field(client: TestClient, body: dict[str, Any], param: str) -> None:
    user = await make_user(client)
    resp = await client.post("/api/llm-configurations/test", headers=user.headers, json=body)
    assert resp.status == 422
    assert (await resp.json())["error"]["param"] == param


@pytest.mark.parametrize(
    ("step", "status", "message", "upstream_status", "retry_after_s"),
    [
        (200, "success", None, 200, None),
        (401, "failed", "Invalid API key - please check your key", 401, None),
        (403, "failed", "Invalid API key - please check your key", 403, None),
        (402, "failed", "Quota or credit exhausted", 402, None),
        (404, "failed", "Model not found: gpt-4o-mini", 404, None),
        ({"status": 429, "retry_after": "5"}, "rate_limited", "Rate limit exceeded - try again in 5s", 429, 5),
        (429, "rate_limited", "Rate limit exceeded - try again later", 429, None),
        ({"status": 400, "error_message": "Unsupported value: 'max_tokens'"}, "failed",
         "Provider refused the test request (400): Unsupported value: 'max_tokens'", 400, None),
        (503, "failed", "Provider error (503)", 503, None),
        ({"garbage": "non_json"}, "failed", "Unexpected answer from the provider: not JSON (HTTP 200)", 200, None),
    ],
)
async def test_saved_verdicts_are_stored_and_audited(
    client: TestClient, fake: FakeOpenAI, step: Any, status: str, message: str | None, upstream_status: int,
    retry_after_s: int | None,
) -> None:
    user = await make_user(client)
    config = await saved(client, user, fake)
    before = await row(client, user, config["id"])
    assert before.test_status == "untested"
    fake.script([step])
    code, body, _ = await run_saved(client, user, config["id"])
    assert code == 200
    assert body["status"] == status and body["success"] is (status == "success")
    assert body["upstream_status"] == upstream_status and body["retry_after_s"] == retry_after_s
    assert body["configuration_id"] == config["id"] and body["name"] == config["name"] and body["tested_at"]
    if message is not None:
        assert body["message"] == message
    stored = await row(client, user, config["id"])
    assert stored.test_status == status
    assert stored.test_message == body["message"] and stored.test_latency_ms == body["latency_ms"]
    assert stored.tested_at is not None and stored.updated_at == before.updated_at  # a test is not an edit
    events = await audit_events(client, user)
    assert [(e.action, e.actor, str(e.configuration_id)) for e in events] == [("test", user.name, config["id"])]
    assert events[0].details["status"] == status and events[0].details["upstream_status"] == upstream_status


async def test_timeout_is_its_own_class_and_failed_in_the_column(make_client: MakeClient, fake: FakeOpenAI) -> None:
    client = await make_client(test_timeout_s=0.5)
    user = await make_user(client)
    config = await saved(client, user, fake)
    fake.behaviour.hang = True
    started = time.monotonic()
    _, body, _ = await run_saved(client, user, config["id"])
    assert time.monotonic() - started < 60  # the upstream never answers: only the timeout ends the test
    assert (body["success"], body["status"], body["message"]) == (False, "timeout", "No answer within 0.5 s")
    assert body["upstream_status"] is None
    stored = await row(client, user, config["id"])
    assert (stored.test_status, stored.test_message) == ("failed", "No answer within 0.5 s")
    assert (await audit_events(client, user))[0].details["status"] == "timeout"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_unreachable_naming_the_host(client: TestClient) -> None:
    user = await make_user(client)
    config = await make_configuration(client, user, base_url=f"http://127.0.0.1:{closed_port()}/v1")
    _, body, _ = await run_saved(client, user, config["id"])
    assert (body["success"], body["status"]) == (False, "unreachable")
    assert "127.0.0.1" in body["message"] and "refused" in body["message"]
    assert (await row(client, user, config["id"])).test_status == "failed"


async def test_connection_reset_is_unreachable(client: TestClient, fake: FakeOpenAI) -> None:
    user = await make_user(client)
    config = await saved(client, user, fake)
    fake.behaviour.garbage = "reset"
    _, body, _ = await run_saved(client, user, config["id"])
    assert body["status"] == "unreachable" and "127.0.0.1" in body["message"]


async def test_dns_failure_is_unreachable_naming_the_host(client: TestClient) -> None:
    user = await make_user(client)
    config = await make_configuration(client, user, base_url="http://no-such-host.invalid/v1")
    _, body, _ = await run_saved(client, user, config["id"])
    assert body["status"] == "unreachable"
    assert body["message"] == "Unreachable: cannot resolve host no-such-host.invalid"


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500])
async def test_a_key_echoed_by_the_provider_never_leaks(client: TestClient, fake: FakeOpenAI, status: int) -> None:
    user = await make_user(client)
    config = await saved(client, user, fake)
    fake.behaviour.echo_key_in_error = True
    fake.behaviour.status = status
    _, _, text = await run_saved(client, user, config["id"])
    assert DEFAULT_OPENAI_KEY not in text
    stored = await row(client, user, config["id"])
    assert stored.test_message and DEFAULT_OPENAI_KEY not in stored.test_message
    assert all(DEFAULT_OPENAI_KEY not in str(e.details) for e in await audit_events(client, user))
    resp = await client.post("/api/llm-configurations/test", headers=user.headers, json={
        "provider": "openai", "model": "gpt-4o-mini", "api_key": DEFAULT_OPENAI_KEY, "base_url": fake.url})
    assert DEFAULT_OPENAI_KEY not in await resp.text()


async def test_echoed_key_in_a_provider_message_is_scrubbed(client: TestClient, fake: FakeOpenAI) -> None:
    user = await make_user(client)
    config = await saved(client, user, fake)
    fake.behaviour.echo_key_in_error = True
    fake.behaviour.status = 400
    _, body, _ = await run_saved(client, user, config["id"])
    assert body["message"].startswith("Provider refused the test request (400)")
    assert "[redacted]" in body["message"] or "****" in body["message"]


async def test_embedding_models_are_tested_with_an_embedding(client: TestClient, fake: FakeOpenAI) -> None:
    user = await make_user(client)
    config = await saved(client, user, fake, model="text-embedding-3-small")
    _, body, _ = await run_saved(client, user, config["id"])
    assert body["status"] == "success"
    assert len(fake.requests_to("/v1/embeddings")) == 1 and not fake.requests_to("/v1/chat/completions")


async def test_anthropic_configurations(client: TestClient, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    anthropic = await start_anthropic_upstream(aiohttp_server)
    user = await make_user(client)
    good = await make_configuration(client, user, provider="anthropic", model="claude-3-5-haiku-latest",
                                    base_url=anthropic.url, api_key=DEFAULT_ANTHROPIC_KEY)
    _, body, _ = await run_saved(client, user, good["id"])
    assert body["status"] == "success", body
    assert anthropic.last_request.body["max_tokens"] == 5
    bad = await make_configuration(client, user, provider="anthropic", model="claude-3-5-haiku-latest",
                                   base_url=anthropic.url, api_key="sk-ant-wrong-0123456789")
    anthropic.behaviour.echo_key_in_error = True
    _, body, text = await run_saved(client, user, bad["id"])
    assert (body["status"], body["message"]) == ("failed", "Invalid API key - please check your key")
    assert "sk-ant-wrong-0123456789" not in text
    anthropic.behaviour.status = 503
    _, body, _ = await run_saved(client, user, good["id"])
    assert (body["status"], body["message"]) == ("failed", "Provider error (503)")
    # litellm folds Anthropic's 529 "overloaded" into a 500: still a provider error, not a key problem.
    anthropic.behaviour.status = 529
    _, body, _ = await run_saved(client, user, good["id"])
    assert body["status"] == "failed" and body["message"].startswith("Provider error (5")


async def test_other_users_and_unknown_ids_are_404(
    client: TestClient, fake: FakeOpenAI, admin_headers: dict[str, str]
) -> None:
    owner, other = await make_user(client), await make_user(client)
    config = await saved(client, owner, fake)
    for config_id in (config["id"], str(uuid.uuid4()), "not-a-uuid"):
        code, body, _ = await run_saved(client, other, config_id)
        assert code == 404 and body["error"]["type"] == "not_found_error"
    assert not fake.requests
    resp = await client.post("/api/llm-configurations/test-all", headers=admin_headers)
    assert resp.status == 403


async def test_test_all_summary_skips_inactive(client: TestClient, fake: FakeOpenAI) -> None:
    user = await make_user(client)
    good = await saved(client, user, fake, name="a-good")
    wrong = await saved(client, user, fake, name="b-wrong", api_key="sk-wrong-0123456789")
    gone = await make_configuration(client, user, name="c-gone", base_url=f"http://127.0.0.1:{closed_port()}/v1")
    inactive = await saved(client, user, fake, name="d-inactive", is_active=False)
    resp = await client.post("/api/llm-configurations/test-all", headers=user.headers)
    assert resp.status == 200
    body = await resp.json()
    by_name = {r["name"]: r for r in body["results"]}
    assert set(by_name) == {"a-good", "b-wrong", "c-gone"}
    assert (by_name["a-good"]["status"], by_name["b-wrong"]["status"], by_name["c-gone"]["status"]) == (
        "success", "failed", "unreachable")
    assert body["summary"] == {"total": 3, "success": 1, "failed": 1, "rate_limited": 0, "timeout": 0,
                               "unreachable": 1}
    assert [(await row(client, user, c["id"])).test_status for c in (good, wrong, gone, inactive)] == [
        "success", "failed", "failed", "untested"]
    assert len(await audit_events(client, user)) == 3


async def test_test_all_runs_four_at_a_time(make_client: MakeClient, fake: FakeOpenAI) -> None:
    client = await make_client(test_concurrency=4)
    user = await make_user(client)
    for _ in range(20):
        await saved(client, user, fake)
    fake.behaviour.delay_s = 1.0  # the runs overlap even on a loaded machine
    resp = await client.post("/api/llm-configurations/test-all", headers=user.headers)
    body = await resp.json()
    assert resp.status == 200 and body["summary"]["success"] == 20
    # Four at a time, never more; counted by the upstream, not read off a clock.
    assert fake.peak_open_requests == 4 and len(fake.requests_to("/v1/chat/completions")) == 20


async def test_tests_are_rate_limited_per_user(make_client: MakeClient, fake: FakeOpenAI) -> None:
    client = await make_client(tests_per_minute=3)
    user, other = await make_user(client), await make_user(client)
    config = await saved(client, user, fake)
    for _ in range(3):
        code, _, _ = await run_saved(client, user, config["id"])
        assert code == 200
    resp = await client.post("/api/llm-configurations/test", headers=user.headers, json={
        "provider": "openai", "model": "gpt-4o-mini", "api_key": DEFAULT_OPENAI_KEY, "base_url": fake.url})
    assert resp.status == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert (await resp.json())["error"]["type"] == "rate_limit_error"
    assert len(fake.requests) == 3
    other_config = await saved(client, other, fake)
    assert (await run_saved(client, other, other_config["id"]))[0] == 200


async def test_test_all_counts_every_configuration_against_the_limit(make_client: MakeClient, fake: FakeOpenAI) -> None:
    client = await make_client(tests_per_minute=4)
    user = await make_user(client)
    for _ in range(3):
        await saved(client, user, fake)
    assert (await client.post("/api/llm-configurations/test-all", headers=user.headers)).status == 200
    resp = await client.post("/api/llm-configurations/test-all", headers=user.headers)
    assert resp.status == 429 and len(fake.requests) == 3


async def _on_save(client: TestClient, user: ApiUser, config_id: str) -> tuple[Any, LLMConfiguration]:
    """Drive the create/update hook the way the handlers do: after the commit, in the handler's session."""
    from aiohttp.test_utils import make_mocked_request

    from gateway.web.auth import CALLER, Caller

    app = client.server.app
    request = make_mocked_request("POST", "/api/llm-configurations", app=app)
    request[CALLER] = Caller(user_id=uuid.UUID(user.id), user_name=user.name, is_admin=False)
    async with app[SESSIONMAKER]() as session:
        config = await get_configuration(session, user_id=uuid.UUID(user.id), configuration_id=config_id)
        await session.commit()
        result = await run_test_on_save(request, session, config)
        return result, config


async def test_test_on_save_stores_the_result_and_updates_the_row(client: TestClient, fake: FakeOpenAI) -> None:
    user = await make_user(client)
    config = await saved(client, user, fake)
    result, in_session = await _on_save(client, user, config["id"])
    assert result.status == "success" and result.configuration_id == uuid.UUID(config["id"])
    assert in_session.test_status == "success" and in_session.test_message == result.message
    assert in_session.tested_at is not None
    assert (await row(client, user, config["id"])).test_status == "success"
    assert [e.details["source"] for e in await audit_events(client, user)] == ["test_on_save"]


async def test_test_on_save_over_the_limit_reports_instead_of_failing(
    make_client: MakeClient, fake: FakeOpenAI
) -> None:
    client = await make_client(tests_per_minute=1)
    user = await make_user(client)
    config = await saved(client, user, fake)
    assert (await _on_save(client, user, config["id"]))[0].status == "success"
    result, in_session = await _on_save(client, user, config["id"])
    assert result.status == "rate_limited" and result.upstream_status is None
    assert result.message.startswith("Not tested: Too many configuration tests") and result.retry_after_s
    assert len(fake.requests) == 1 and in_session.test_status == "success"
