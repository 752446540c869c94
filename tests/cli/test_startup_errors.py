"""What an operator meets first: one line (never a traceback) for each mistake, and one start-up block."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import __version__
from gateway.crypto.keyring import generate_key_entry
from gateway.store import migrate
from tests.cli.test_cli import _env, cli, free_port, start, stop, wait_healthy


def serve_process(cwd: Path, port: int, **env: str) -> subprocess.Popen[str]:
    """`llm-gateway serve` with these settings (and no others from the environment)."""
    return subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port)], cwd=cwd,
                            env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Assert a non-zero exit with exactly one stderr line holding every needle, and no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port), cwd=tmp_path)
    one_line(result, f"127.0.0.1:{port}", "address already in use", "LLM_GATEWAY_PORT")


def test_unknown_log_level(tmp_path: Path) -> None:
    one_line(cli("serve", cwd=tmp_path, LLM_GATEWAY_LOG_LEVEL="LOUD"), "LLM_GATEWAY_LOG_LEVEL", "DEBUG")


def test_unknown_log_format(tmp_path: Path) -> None:
    one_line(cli("serve", cwd=tmp_path, LLM_GATEWAY_LOG_FORMAT="xml"), "LLM_GATEWAY_LOG_FORMAT")


def test_malformed_toml(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("port = [\n")
    one_line(cli("serve", cwd=tmp_path, LLM_GATEWAY_CONFIG=str(config)), "LLM_GATEWAY_CONFIG", str(config),
             "not valid TOML")


def test_config_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    one_line(cli("serve", cwd=tmp_path, LLM_GATEWAY_CONFIG=str(missing)), "LLM_GATEWAY_CONFIG", str(missing),
             "does not exist")


def test_unreachable_postgres(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+asyncpg://gw:s3cret-pass@127.0.0.1:{port}/gatewaydb"
    line = one_line(cli("serve", "--port", str(free_port()), cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=url,
                        LLM_GATEWAY_ENCRYPTION_KEYS=generate_key_entry("a")),
                    "'gatewaydb'", f"127.0.0.1:{port}", "connection refused", "LLM_GATEWAY_DATABASE_URL")
    assert "s3cret-pass" not in line


def test_missing_postgres_database(tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/no_such_gateway_db"
    one_line(cli("serve", "--port", str(free_port()), cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=url,
                 LLM_GATEWAY_ENCRYPTION_KEYS=generate_key_entry("a")),
             "'no_such_gateway_db'", 'database "no_such_gateway_db" does not exist', "LLM_GATEWAY_DATABASE_URL")


def test_empty_postgres_schema(tmp_path: Path, postgres_url: str) -> None:
    migrate.downgrade(postgres_url, "base")
    try:
        result = cli("serve", "--port", str(free_port()), cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=postgres_url,
                     LLM_GATEWAY_ENCRYPTION_KEYS=generate_key_entry("a"))
        listed = cli("users", "list", cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=postgres_url)
    finally:
        migrate.upgrade(postgres_url)
    one_line(result, "no schema", "run `llm-gateway db upgrade`")
    one_line(listed, "no schema", "run `llm-gateway db upgrade`")


@pytest.mark.parametrize("command", [("users", "list"), ("tokens", "create", "admin"), ("users", "disable", "x")])
def test_cli_command_without_a_database(tmp_path: Path, command: tuple[str, ...]) -> None:
    result = cli(*command, cwd=tmp_path)
    one_line(result, f"no database at {tmp_path / 'data' / 'gateway.db'}", "llm-gateway db upgrade")
    assert not (tmp_path / "data" / "gateway.db").exists()  # a typo in the settings does not create a database


def test_cli_command_whose_postgres_cannot_be_opened(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://gw@127.0.0.1:{free_port()}/gatewaydb"
    one_line(cli("users", "list", cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=url), "'gatewaydb'", "connection refused")
    one_line(cli("db", "upgrade", cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=url), "'gatewaydb'", "connection refused")


def test_start_up_block_and_a_private_database_file(tmp_path: Path) -> None:
    port = free_port()
    proc = start(tmp_path, port)
    try:
        wait_healthy(port, proc)
    finally:
        out = stop(proc)
    data = tmp_path / "data"
    assert f"llm-gateway {__version__}" in out
    assert f"database   sqlite+aiosqlite:///{data / 'gateway.db'}" in out
    assert f"data       {data}" in out
    assert f"web page   http://127.0.0.1:{port}/ui/" in out
    assert f"API docs   http://127.0.0.1:{port}/api/docs" in out
    assert "created the user 'admin'" in out
    assert stat.S_IMODE((data / "gateway.db").stat().st_mode) == 0o600

    proc = start(tmp_path, port)
    try:
        wait_healthy(port, proc)
    finally:
        again = stop(proc)
    assert "admin      not created" in again and "llm-gateway tokens create admin" in again


def test_start_up_block_hides_the_database_password(tmp_path: Path, postgres_url: str) -> None:
    user_part, _, rest = postgres_url.partition("@")
    url = f"{user_part}:hunter2-not-shown@{rest}" if ":" not in user_part.split("//", 1)[1] else postgres_url
    port = free_port()
    proc = serve_process(tmp_path, port, LLM_GATEWAY_DATABASE_URL=url,
                         LLM_GATEWAY_ENCRYPTION_KEYS=generate_key_entry("a"))
    try:
        wait_healthy(port, proc)
    finally:
        out = stop(proc)
    assert "hunter2-not-shown" not in out
    assert f"@{rest}" in out


def test_relative_data_dir_is_resolved_and_shared_by_the_cli(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    port = free_port()
    env = {"LLM_GATEWAY_DATA_DIR": "state"}
    proc = serve_process(tmp_path, port, **env)
    try:
        wait_healthy(port, proc)
    finally:
        out = stop(proc)
    assert f"data       {tmp_path / 'state'}" in out
    assert f"sqlite+aiosqlite:///{tmp_path / 'state' / 'gateway.db'}" in out
    listed = cli("users", "list", cwd=tmp_path, **env)
    assert listed.returncode == 0 and "admin" in listed.stdout, listed.stderr



def test_a_database_url_is_shown_without_its_password() -> None:
    from gateway.settings import public_database_url

    assert public_database_url("postgresql+asyncpg://gw:pa:ss@db:5432/x") == "postgresql+asyncpg://gw:***@db:5432/x"
    assert public_database_url("postgresql+asyncpg://gw:s3cr@t@db/x") == "postgresql+asyncpg://gw:***@db/x"
    assert public_database_url("postgresql+asyncpg://gw@db:5432/x") == "postgresql+asyncpg://gw@db:5432/x"
    assert public_database_url("postgresql+asyncpg://db:5432/x") == "postgresql+asyncpg://db:5432/x"
