"""The command line as an operator meets it: embedded default start, one-line refusals, users and tokens."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from gateway.crypto.keyring import generate_key_entry
from gateway.settings import parse_key_ring
from gateway.store import migrate
from gateway.store.db import make_engine, make_sessionmaker
from gateway.store.models import LLMConfiguration, User
from tests.reliability.processes import free_port


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_GATEWAY_")}
    env.update(extra)
    return env


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=60
    )


def wait_healthy(port: int, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gateway did not become healthy")


def start(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    return out


def test_embedded_default_starts_with_a_local_key_and_first_admin(tmp_path: Path) -> None:
    port = free_port()
    proc = start(tmp_path, port)
    try:
        wait_healthy(port, proc)
    finally:
        first = stop(proc)
    key_file = tmp_path / "data" / "encryption.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    parse_key_ring(key_file.read_text().strip())
    assert "wrote a new encryption key" in first
    assert first.count("lgw_") == 1
    key_before = key_file.read_text()

    proc = start(tmp_path, port)
    try:
        wait_healthy(port, proc)
    finally:
        second = stop(proc)
    assert key_file.read_text() == key_before
    assert "lgw_" not in second and "wrote a new encryption key" not in second


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"LLM_GATEWAY_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/x"}, "LLM_GATEWAY_ENCRYPTION_KEYS"),
        ({"LLM_GATEWAY_ENCRYPTION_KEYS": "k1:c2hvcnQ"}, "LLM_GATEWAY_ENCRYPTION_KEYS"),
        ({"LLM_GATEWAY_DATABASE_URL": "mysql://root@localhost/x"}, "LLM_GATEWAY_DATABASE_URL"),
        ({"LLM_GATEWAY_ADMIN_TOKEN": "changeme"}, "LLM_GATEWAY_ADMIN_TOKEN"),
        ({"LLM_GATEWAY_PORT": "http"}, "LLM_GATEWAY_PORT"),
    ],
)
def test_bad_settings_stop_serve_with_one_line(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    result = cli("serve", cwd=tmp_path, **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_keys_generate_prints_a_ring_entry(tmp_path: Path) -> None:
    result = cli("keys", "generate", "--key-id", "prod2", cwd=tmp_path)
    ((key_id, key),) = parse_key_ring(result.stdout.strip())
    assert key_id == "prod2" and len(key) == 32


def test_users_and_tokens_from_the_cli(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert cli("db", "upgrade", cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=url).returncode == 0
    created = cli("users", "create", "carol", "--admin", cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=url)
    assert created.returncode == 0 and "lgw_" in created.stdout
    again = cli("users", "create", "carol", cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=url)
    assert again.returncode == 2 and "already exists" in again.stderr
    made = cli("tokens", "create", "carol", "--expires-days", "3", cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=url)
    assert made.returncode == 0 and "lgw_" in made.stdout
    listed = cli("tokens", "list", "carol", cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=url)
    rows = listed.stdout.strip().splitlines()
    tokens = re.findall(r"lgw_[A-Za-z0-9_-]{20,}", created.stdout + made.stdout)
    assert len(tokens) == 2 and len(rows) == 2 and all("active" in r for r in rows)
    assert not [token for token in tokens if token in listed.stdout]  # a listing shows prefixes, never tokens
    token_id = rows[0].split()[0]
    assert cli("tokens", "revoke", token_id, cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=url).returncode == 0
    listed = cli("tokens", "list", "carol", cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=url)
    assert "revoked" in listed.stdout
    bad = cli("tokens", "revoke", "nope", cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=url)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_serve_refuses_a_schema_that_is_behind(tmp_path: Path, postgres_url: str) -> None:
    # (SQLite, the embedded default, applies migrations itself.)
    database_url = postgres_url

    migrate.downgrade(database_url, "base")
    result = cli("serve", cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=database_url,
                 LLM_GATEWAY_ENCRYPTION_KEYS=generate_key_entry("a"))
    migrate.upgrade(database_url)
    assert result.returncode == 2
    assert "llm-gateway db upgrade" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_serve_refuses_rows_under_a_key_the_ring_lacks(tmp_path: Path, database_url: str) -> None:
    async def seed() -> None:
        engine = make_engine(database_url)
        async with make_sessionmaker(engine)() as session:
            user = User(id=uuid.uuid4(), name="dave", is_admin=False)
            session.add(user)
            await session.flush()
            for _ in range(2):
                session.add(LLMConfiguration(id=uuid.uuid4(), user_id=user.id, name=f"c{uuid.uuid4().hex[:6]}",
                                             provider="openai", model="gpt-4o", api_key_encrypted="v1.gone.AAAA",
                                             key_id="gone"))
            await session.commit()
        await engine.dispose()

    asyncio.run(seed())
    result = cli("serve", cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=database_url,
                 LLM_GATEWAY_ENCRYPTION_KEYS=generate_key_entry("a"), LLM_GATEWAY_PORT=str(free_port()))
    assert result.returncode == 2
    assert "2 configurations under key id 'gone'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_two_gateways_starting_on_one_empty_database_both_come_up(tmp_path: Path, postgres_url: str) -> None:
    # Both race to create the first admin; the loser must start anyway (it was a one-line exit before).
    from gateway.cli import bootstrap
    from gateway.settings import Settings

    settings = Settings(database_url=postgres_url, encryption_keys=generate_key_entry("a"))

    async def race() -> list[str | None]:
        return list(await asyncio.gather(*(bootstrap.ensure_first_admin(settings) for _ in range(4))))

    tokens = asyncio.run(race())
    assert len([t for t in tokens if t]) == 1
