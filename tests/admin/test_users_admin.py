"""Operators disable, enable and delete users: a disabled user's tokens are refused at once, on both databases,
from the admin API and from the CLI, and the users.disabled_at migration goes up and down."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import inspect
from sqlalchemy.pool import NullPool

from gateway.store import migrate
from gateway.store.db import make_engine
from tests.factories import make_user
from tests.gateway.test_cli import cli, free_port, stop, wait_healthy
from tests.gateway.test_startup_errors import one_line, serve_process


async def _models_status(client: TestClient, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/v1/models", headers=headers)
    return resp.status, await resp.json()


async def test_a_disabled_user_is_refused_at_once_and_enabled_again(client: TestClient,
                                                                    admin_headers: dict[str, str]) -> None:
    user = await make_user(client)
    assert (await _models_status(client, user.headers))[0] == 200  # the token is now cached

    resp = await client.post(f"/api/admin/users/{user.id}/disable", headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["disabled_at"] is not None
    status, body = await _models_status(client, user.headers)
    assert status == 401 and body["error"]["code"] == "user_disabled"
    assert f"'{user.name}' is disabled" in body["error"]["message"]

    listed = await (await client.get("/api/admin/users", headers=admin_headers)).json()
    assert [u["disabled_at"] is not None for u in listed["items"] if u["id"] == user.id] == [True]

    resp = await client.post(f"/api/admin/users/{user.id}/enable", headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["disabled_at"] is None
    assert (await _models_status(client, user.headers))[0] == 200


async def test_a_deleted_user_is_gone_with_its_tokens(client: TestClient, admin_headers: dict[str, str]) -> None:
    user = await make_user(client)
    assert (await _models_status(client, user.headers))[0] == 200
    assert (await client.delete(f"/api/admin/users/{user.id}", headers=admin_headers)).status == 204
    status, body = await _models_status(client, user.headers)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert (await client.delete(f"/api/admin/users/{user.id}", headers=admin_headers)).status == 404
    assert (await client.post(f"/api/admin/users/{user.id}/disable", headers=admin_headers)).status == 404


async def test_only_operators_disable_users(client: TestClient) -> None:
    user = await make_user(client)
    other = await make_user(client)
    admin = await make_user(client, is_admin=True)  # an admin user, not only the operator token
    resp = await client.post(f"/api/admin/users/{other.id}/disable", headers=user.headers)
    assert resp.status == 403
    assert (await _models_status(client, other.headers))[0] == 200
    assert (await client.post(f"/api/admin/users/{other.id}/disable", headers=admin.headers)).status == 200
    assert (await _models_status(client, other.headers))[0] == 401


def _status(port: int, token: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _until(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_cli_users_list_disable_enable_delete_against_a_running_gateway(tmp_path: Path) -> None:
    port = free_port()
    proc = serve_process(tmp_path, port)
    try:
        wait_healthy(port, proc)
        created = cli("users", "create", "erin", cwd=tmp_path)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip().splitlines()[-1]
        assert _status(port, token) == 200

        listed = cli("users", "list", cwd=tmp_path).stdout
        assert "admin  admin" in listed and "erin" in listed and "disabled" not in listed

        assert cli("users", "disable", "erin", cwd=tmp_path).returncode == 0
        assert "erin  disabled" in cli("users", "list", cwd=tmp_path).stdout
        # The running gateway had the token cached: the CLI's change notification drops it.
        assert _until(lambda: _status(port, token) == 401)

        assert cli("users", "enable", "erin", cwd=tmp_path).returncode == 0
        assert _until(lambda: _status(port, token) == 200)

        assert cli("users", "delete", "erin", cwd=tmp_path).returncode == 0
        assert _until(lambda: _status(port, token) == 401)
        assert "erin" not in cli("users", "list", cwd=tmp_path).stdout
        one_line(cli("users", "disable", "erin", cwd=tmp_path), "no user named 'erin'")
    finally:
        stop(proc)


def test_cli_users_create_validates_names_like_the_api(tmp_path: Path) -> None:
    for bad in ("has space", "semi;colon", "x" * 101, "new\nline"):
        one_line(cli("users", "create", bad, cwd=tmp_path), "Invalid 'name'")
    assert not (tmp_path / "data").exists()  # refused before any database is opened


def _columns(url: str) -> set[str]:
    async def run() -> set[str]:
        engine = make_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return {c["name"] for c in await conn.run_sync(lambda c: inspect(c).get_columns("users"))}
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_disabled_at_migration_up_and_down(database_url: str) -> None:
    assert "disabled_at" in _columns(database_url)
    migrate.downgrade(database_url, "0002")
    try:
        assert "disabled_at" not in _columns(database_url) and "name" in _columns(database_url)
    finally:
        migrate.upgrade(database_url, "head")  # the PostgreSQL database is shared by the run: leave it at head
    assert "disabled_at" in _columns(database_url)
