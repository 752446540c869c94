"""Logs as an operator and a log shipper read them: one line per record, JSON on request, nothing a client sends
can start a line of its own, and no secret at DEBUG."""

from __future__ import annotations

import io
import json
import logging
import re
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway import logs
from gateway.accounts.tokens import hash_token
from gateway.proxy.usage import access_fields, access_line
from tests.cli.live import Gateway, start_fake, stop_fake
from tests.cli.test_cli import _env, free_port
from tests.factories import make_configuration, make_user
from tests.fakes.openai_upstream import start_openai_upstream


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("gateway.test", logging.WARNING, __file__, 1, message, args, None)


@pytest.mark.parametrize("formatter", [logs.TextFormatter(), logs.JsonFormatter()])
def test_a_forged_line_stays_on_its_line(formatter: logging.Formatter) -> None:
    forged = "/v1/x\r\n2026-01-01T00:00:00.000+00:00 INFO gateway.access: request_id=forged\x1b[2J\x00\u2028end"
    line = formatter.format(_record("path %s", forged))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert "\\r\\n2026-01-01" in line or "\\\\r\\\\n2026-01-01" in line


def test_a_traceback_is_one_line() -> None:
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        record = logging.LogRecord("gateway.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = logs.TextFormatter().format(record)
    assert "\n" not in line and "Traceback" in line and "first\\nsecond" in line


def test_configure_pins_the_libraries_that_would_log_secrets() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logs.configure("DEBUG", "text", stream)
    try:
        for name in ("aiosqlite", "asyncpg", "sqlalchemy.engine", "httpx", "litellm", "LiteLLM"):
            logging.getLogger(name).debug("secret sk-should-not-appear")
            logging.getLogger(name).info("secret sk-should-not-appear")
        logging.getLogger("gateway.test").debug("ours")
    finally:  # give pytest its own handlers back
        root.handlers[:] = handlers
        root.setLevel(level)
    assert "sk-should-not-appear" not in stream.getvalue()
    assert "gateway.test: ours" in stream.getvalue()


# A `key=value` text line read back as a log shipper (logfmt) reads it: a value is a quoted string with
# backslash escapes, or everything up to the next space.
FIELD = re.compile(r'(?:^| )([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ ]*)')
HOSTILE_PATHS = [
    "x user_id={other} status=200",  # the forgery of the issue
    'x" user_id={other} "',
    'x\\" user_id={other} \\',
    "x\tuser_id={other}",
    "x\nuser_id={other}",
    "x\u2028user_id={other}",
    "x\u00a0user_id={other}",  # a no-break space
    "x\u202euser_id={other}",  # right-to-left override
    "x\x00\x1b[2J user_id={other}",
    "=user_id={other}",
    "ünïcødé/路径 user_id={other}",
]


def _fields(line: str) -> list[tuple[str, str]]:
    """The key=value fields of a text line after its `time LEVEL logger:` prefix and the record's own time."""
    message = line.split(": ", 1)[1]
    return FIELD.findall(message.split(" ", 1)[1])


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_an_access_line_has_one_of_each_field_whatever_the_path(path: str) -> None:
    user_id, other = uuid.uuid4(), uuid.uuid4()
    endpoint = path.format(other=other)
    event = ("0123456789abcdef", user_id, None, None, "/" + endpoint, 404, 1, False, 0.01, 1.7e9, None, None, None)
    fields = access_fields(event)
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "%s", (access_line(fields),), None)
    line = logs.TextFormatter().format(record)
    found = _fields(line)
    assert [key for key, _ in found] == ["request_id", "user_id", "configuration_id", "endpoint", "status",
                                         "attempts", "latency_ms"], line
    assert dict(found)["user_id"] == str(user_id) and str(other) not in dict(found)["user_id"]
    assert "\n" not in line and "\u2028" not in line and "\u202e" not in line and "\x1b" not in line
    # JSON lines were safe already: the endpoint is one string field, whatever it holds.
    record.access = fields  # type: ignore[attr-defined]
    doc = json.loads(logs.JsonFormatter().format(record))
    assert doc["user_id"] == str(user_id) and doc["endpoint"] == endpoint[:50]
    assert "\u202e" not in logs.JsonFormatter().format(record)


async def test_a_forged_path_through_the_gateway_logs_its_caller_only(client: Any, aiohttp_server: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    user, other = await make_user(client), await make_user(client, name="other")
    fake = await start_openai_upstream(aiohttp_server)
    await make_configuration(client, user, name="c", base_url=fake.url)
    caplog.set_level(logging.INFO, logger="gateway.access")
    resp = await client.post(f"/v1/x%20user_id={other.id}%20status=200", headers=user.headers,
                             json={"model": "c", "input": "hi"})
    assert resp.status == 404
    await client.get("/metrics")  # access lines are written with the usage writer's batch, before a scrape
    lines = [logs.TextFormatter().format(r) for r in caplog.records if r.name == "gateway.access"]
    assert len(lines) == 1, lines
    fields = _fields(lines[0])
    assert [value for key, value in fields if key == "user_id"] == [str(user.id)], lines[0]
    assert [value for key, value in fields if key == "status"] == ["404"], lines[0]
    assert dict(fields)["endpoint"] == '"' + f"x user_id={other.id} status=200"[:50] + '"'  # the column's length


def _scenario(tmp_path: Path, **env: str) -> dict[str, str]:
    """A gateway and the fake upstream; one user, one configuration, a good request and a forged path."""
    key = f"sk-live-{uuid.uuid4().hex}"
    prompt = f"prompt-{uuid.uuid4().hex}"
    fake, fake_url = start_fake(key)
    gateway = Gateway(tmp_path, LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS="true", **env)
    try:
        status, user = gateway.call("POST", "/api/admin/users", gateway.admin_token, {"name": "logan"})
        assert status == 201, user
        status, config = gateway.call("POST", "/api/llm-configurations", user["token"], {
            "name": "fake", "provider": "openai", "model": "gpt-4o-mini", "api_key": key, "base_url": fake_url})
        assert status == 201, config
        chat = {"model": "fake", "messages": [{"role": "user", "content": prompt}]}
        status, reply = gateway.call("POST", "/v1/chat/completions", user["token"], chat)
        assert status == 200, reply
        # A path a client made up to look like the start of another record; then raw control bytes in headers.
        # (%0a never reaches a handler: aiohttp's router does not match a newline; CR and U+2028 do, and
        # splitlines() and terminals break lines there.)
        gateway.call("POST", "/v1/chat%0d2026-01-01%20INFO%20forged%1b%e2%80%a8/completions", user["token"], chat)
        gateway.call("POST", "/v1/chat/completions", user["token"], chat, headers={"X-Conversation-Id": "c\x7f\x1b[2J"})
        gateway.raw(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nUser-Agent: ua\x1b[31m\x00red\r\n\r\n")
    finally:
        out, err = gateway.stop()
        stop_fake(fake)
    with sqlite3.connect(tmp_path / "data" / "gateway.db") as db:
        (ciphertext,) = db.execute("SELECT api_key_encrypted FROM llm_configurations").fetchone()
        hashes = [row[0] for row in db.execute("SELECT token_hash FROM api_tokens")]
    return {"out": out, "err": err, "key": key, "prompt": prompt, "ciphertext": ciphertext,
            "hashes": "\n".join(hashes + [hash_token(user["token"]), hash_token(gateway.admin_token)])}


def test_debug_logs_hold_no_key_ciphertext_token_hash_or_prompt(tmp_path: Path) -> None:
    run = _scenario(tmp_path, LLM_GATEWAY_LOG_LEVEL="DEBUG")
    captured = run["out"] + run["err"]
    assert "gateway.access" in run["err"]  # the run did log, at DEBUG
    for secret in (run["key"], run["ciphertext"], run["prompt"], *run["hashes"].splitlines()):
        assert secret not in captured
    forged = [line for line in run["err"].splitlines() if "forged" in line]
    assert len(forged) == 1 and 'endpoint="chat\\r2026-01-01 INFO forged\\x1b\\u2028/completions"' in forged[0], forged
    assert not any(line.startswith("2026-01-01") for line in captured.splitlines())
    assert "\x1b" not in run["err"] and "\x7f" not in run["err"]


def test_json_log_lines_for_log_shippers(tmp_path: Path) -> None:
    run = _scenario(tmp_path, LLM_GATEWAY_LOG_FORMAT="json")
    records = [json.loads(line) for line in run["err"].splitlines()]  # every line is one JSON object
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "gateway.access"]
    assert len(access) == 2
    assert {"request_id", "user_id", "configuration_id", "endpoint", "status", "attempts", "latency_ms"} <= set(access[0])
    assert access[0]["status"] == 200 and access[0]["endpoint"] == "chat/completions"
    forged = [r for r in access if "forged" in r["endpoint"]]
    assert len(forged) == 1 and "\r2026-01-01" in forged[0]["endpoint"]  # kept as data, JSON-escaped on the line
    assert run["key"] not in run["err"]


def test_litellm_records_come_once_in_our_format_and_its_chatter_not_at_all(tmp_path: Path) -> None:
    script = ("import logging; from gateway import logs; logs.configure('DEBUG'); import litellm; "
              "logging.getLogger('LiteLLM').warning('one %s', 'a\\nb'); logging.getLogger('LiteLLM').info('chatter'); "
              "litellm.verbose_logger.debug('chatter')")
    env = _env(LITELLM_LOCAL_MODEL_COST_MAP="True")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "one a" in line]
    assert len(lines) == 1 and lines[0].endswith(" WARNING LiteLLM: one a\\nb"), done.stderr
    assert "chatter" not in done.stderr


async def test_upstream_failures_are_logged_by_cause_never_with_the_key(
        client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    user = await make_user(client)
    wrong_key = f"sk-wrong-{uuid.uuid4().hex}"
    fake = await start_openai_upstream(aiohttp_server, keys=[f"sk-right-{uuid.uuid4().hex}"])
    refused = await make_configuration(client, user, name="refused", api_key=wrong_key, base_url=fake.url)
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: a connection error
    await make_configuration(client, user, name="closed", api_key=wrong_key, base_url=closed,
                             fallback_ids=[refused["id"]])
    caplog.set_level(logging.WARNING, logger="gateway.upstream")
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "closed", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status == 401
    lines = [record.getMessage() for record in caplog.records if record.name == "gateway.upstream"]
    assert len(lines) == 2, lines
    assert "status=502" in lines[0] and "cause=ClientConnectorError" in lines[0]
    assert "status=401" in lines[1] and "cause=HTTP 401" in lines[1] and f"configuration_id={refused['id']}" in lines[1]
    assert not any(wrong_key in line or wrong_key[:12] in line for line in lines)
