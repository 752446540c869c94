"""The key-leak watch can fail: a planted key is caught in every place it claims to watch (a log record in any
phase, an answer — streamed or not —, a usage or audit row, stdout/stderr, a process's log file), the failure names the place and the
test that made the key but never prints the key, and a random `sk-…` lookalike is not flagged."""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from pathlib import Path

import pytest

from tests.leakwatch import KeyRegistry, LeakWatch, fingerprint

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
# The watch's old pattern: random gateway tokens matched it about once in 10,000.
OLD_PATTERN = re.compile(r"sk-(?:ant-)?[A-Za-z0-9_-]{16,}")

# Each test plants PLANTED in one place; only test_lookalike_only must pass.
INNER = '''
import logging
import secrets
import sys
import uuid

import pytest
from aiohttp import web

from gateway.accounts.audit import record
from gateway.app import create_app
from gateway.store.models import UsageRecord
from gateway.web.appkeys import SESSIONMAKER
from tests.factories import make_user
from tests.leakwatch import watched

PLANTED = "{planted}"


async def answer(request):
    return web.json_response({{"echo": PLANTED}})


async def stream(request):
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(PLANTED[:10].encode())
    await response.write(PLANTED[10:].encode())
    return response


@pytest.fixture
def logs_at_teardown():
    yield
    logging.getLogger("gateway.teardown").warning("closing with %s", PLANTED)


def test_log_in_call():
    watched(PLANTED, "the planting test")
    logging.getLogger("gateway.planted").debug("a careless line with %s", PLANTED)


def test_log_in_teardown(logs_at_teardown):
    watched(PLANTED, "the planting test")


def test_stdout():
    watched(PLANTED, "the planting test")
    print("the key is", PLANTED)


def test_log_file(tmp_path):
    watched(PLANTED, "the planting test")
    (tmp_path / "gateway.log").write_text("started with " + PLANTED)


def test_stderr():
    watched(PLANTED, "the planting test")
    print(PLANTED, file=sys.stderr)


async def test_response_body(aiohttp_client, settings):
    watched(PLANTED, "the planting test")
    app = create_app(settings)
    app.router.add_get("/planted", answer)
    assert (await (await aiohttp_client(app)).get("/planted")).status == 200


async def test_streamed_response(aiohttp_client, settings):
    watched(PLANTED, "the planting test")
    app = create_app(settings)
    app.router.add_get("/planted", stream)
    assert (await (await aiohttp_client(app)).get("/planted")).status == 200


@pytest.fixture
async def own_client(aiohttp_client, settings):
    # A module's own client fixture, as tests/admin/test_testing.py once had: the watch still sees its app.
    app = create_app(settings)
    app.router.add_get("/planted", answer)
    return await aiohttp_client(app)


async def test_own_client_fixture(own_client):
    watched(PLANTED, "the planting test")
    assert (await own_client.get("/planted")).status == 200


async def test_usage_row(aiohttp_client, settings):
    watched(PLANTED, "the planting test")
    client = await aiohttp_client(create_app(settings))
    user = await make_user(client)
    async with client.server.app[SESSIONMAKER]() as session:
        session.add(UsageRecord(user_id=uuid.UUID(user.id), conversation_id=PLANTED, status=200))
        await session.commit()


async def test_audit_row(aiohttp_client, settings):
    watched(PLANTED, "the planting test")
    client = await aiohttp_client(create_app(settings))
    user = await make_user(client)
    async with client.server.app[SESSIONMAKER]() as session:
        record(session, user_id=uuid.UUID(user.id), actor="t", action="planted", details={{"note": PLANTED}})
        await session.commit()


async def test_stored_key_unregistered_in_a_log(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    user = await make_user(client)
    resp = await client.post("/api/llm-configurations", headers=user.headers,
                             json={{"name": "n", "provider": "openai", "model": "m", "api_key": PLANTED}})
    assert resp.status == 201
    logging.getLogger("gateway.planted").info("later: %s", PLANTED)


async def test_lookalike_only(aiohttp_client, settings):
    watched(PLANTED, "the planting test")
    lookalike = "sk-" + secrets.token_urlsafe(24)
    logging.getLogger("gateway.planted").info("a token: %s", lookalike)
    print(lookalike)
    app = create_app(settings)

    async def token(request):
        return web.json_response({{"token": lookalike}})

    app.router.add_get("/planted", token)
    assert (await (await aiohttp_client(app)).get("/planted")).status == 200
'''

PLACES = {
    "test_log_in_call": "a log record of gateway.planted",
    "test_log_in_teardown": "a log record of gateway.teardown",
    "test_stdout": "Captured stdout call",
    "test_stderr": "Captured stderr call",
    "test_log_file": "the log file gateway.log",
    "test_response_body": "the answer to GET /planted (200)",
    "test_streamed_response": "the answer to GET /planted (200)",
    "test_own_client_fixture": "the answer to GET /planted (200)",
    "test_usage_row": "a row of usage_records",
    "test_audit_row": "a row of audit_events",
    "test_stored_key_unregistered_in_a_log": "a log record of gateway.planted",
}


@pytest.fixture
def inner_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> tuple[str, pytest.RunResult]:
    """The planting tests, run by pytest in a process of their own under this suite's conftest."""
    planted = f"sk-planted-{uuid.uuid4().hex}"
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("LLM_GATEWAY_TEST_DATABASE_URL", raising=False)
    monkeypatch.delenv("CI", raising=False)  # SQLite is enough here: under CI a run without PostgreSQL stops
    pytester.makeconftest("from tests.conftest import *  # noqa: F403  (the suite's fixtures and watch)\n")
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nasyncio_mode = "auto"\n'
                               'asyncio_default_fixture_loop_scope = "function"\nfilterwarnings = ["error"]\n')
    pytester.makepyfile(test_planted=INNER.format(planted=planted))
    return planted, pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", timeout=300)


def test_a_planted_key_fails_the_test_wherever_it_shows(inner_run: tuple[str, pytest.RunResult]) -> None:
    planted, result = inner_run
    output = result.stdout.str()
    parts = re.split(r"_{5,} ERROR at teardown of (test_\w+)(?:\[sqlite\])? _{5,}", output)
    reports = dict(zip(parts[1::2], parts[2::2]))
    assert sorted(reports) == sorted(PLACES), output[-3000:]
    for name, place in PLACES.items():
        assert place in reports[name] and fingerprint(planted) in reports[name], (name, reports[name])
    assert "made by the planting test in test_planted.py::test_log_in_call" in reports["test_log_in_call"]
    assert "stored by the gateway" in reports["test_stored_key_unregistered_in_a_log"]
    assert re.search(r"PASSED test_planted.py::test_lookalike_only\[sqlite\]", output), output[-3000:]
    # The failure reports, captured output and logs included, never show the key itself.
    shown = planted in output or planted in result.stderr.str()
    assert not shown  # (a bool: assertion rewriting would print the key)


def test_a_random_lookalike_is_not_a_finding() -> None:
    registry = KeyRegistry({"sk-test-openai-0000000000000001": "a fake"})
    watch = LeakWatch(registry)
    registry.add(f"sk-made-{uuid.uuid4().hex}", "this test")
    lookalikes = ["sk-" + secrets.token_urlsafe(24) for _ in range(200)]
    for token in lookalikes:
        watch.see("a response", f'{{"token": "{token}"}}')
    watch.log(logging.LogRecord("gateway", logging.INFO, __file__, 1, "token %s", (lookalikes[0],), None),
              f"token {lookalikes[0]}")
    assert all(OLD_PATTERN.search(token) for token in lookalikes)  # what the old watch flagged
    assert watch.findings() == []


def test_a_finding_names_the_place_the_maker_and_a_hash_only() -> None:
    registry = KeyRegistry({})
    watch = LeakWatch(registry)
    key = registry.add(f"sk-made-{uuid.uuid4().hex}", "make_configuration()")
    watch.see("a row of usage_records", f"conversation_id={key!r}")
    [finding] = watch.findings()
    assert finding.where == "a row of usage_records" and "make_configuration()" in finding.what
    assert fingerprint(key) in str(finding) and key not in str(finding) and "<KEY>" in str(finding)
