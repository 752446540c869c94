"""SQLite's stand-in for NOTIFY: two gateway apps on one SQLite file (as two workers would be) see each
other's writes within a second, and a token revoked from the CLI is refused by a running gateway."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from gateway.app import create_app
from gateway.settings import Settings
from tests.cli.test_cli import cli
from tests.conftest import ADMIN_TOKEN
from tests.factories import make_user


@pytest.fixture
def sqlite_settings(tmp_path: Path, sqlite_template: Path, key_ring: str) -> Settings:
    """SQLite only: PostgreSQL carries changes with NOTIFY (tests/proxy/test_propagation.py)."""
    path = tmp_path / "shared.db"
    shutil.copyfile(sqlite_template, path)
    return Settings(database_url=f"sqlite+aiosqlite:///{path}", encryption_keys=SecretStr(key_ring),
                    admin_token=SecretStr(ADMIN_TOKEN), data_dir=tmp_path / "data")


async def until(predicate, timeout: float = 30.0) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not await predicate():
        assert time.monotonic() - started < timeout, "change did not arrive in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_revocation_in_one_app_reaches_the_other(aiohttp_client, sqlite_settings: Settings,
                                                         admin_headers: dict[str, str]) -> None:
    first: TestClient = await aiohttp_client(create_app(sqlite_settings))
    second: TestClient = await aiohttp_client(create_app(sqlite_settings))
    user = await make_user(first, is_admin=True)
    assert (await second.get("/api/admin/users", headers=user.headers)).status == 200  # cached in `second`
    tokens = await (await first.get(f"/api/admin/users/{user.id}/tokens", headers=admin_headers)).json()
    assert (await first.delete(f"/api/admin/tokens/{tokens['items'][0]['id']}", headers=admin_headers)).status == 204

    async def refused() -> bool:
        return (await second.get("/api/admin/users", headers=user.headers)).status == 401

    await until(refused)


async def test_a_token_revoked_from_the_cli_is_refused_by_a_running_gateway(
    aiohttp_client, sqlite_settings: Settings, admin_headers: dict[str, str], tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    client: TestClient = await aiohttp_client(create_app(sqlite_settings))
    user = await make_user(client, is_admin=True)
    assert (await client.get("/api/admin/users", headers=user.headers)).status == 200
    tokens = await (await client.get(f"/api/admin/users/{user.id}/tokens", headers=admin_headers)).json()
    result = await asyncio.to_thread(cli, "tokens", "revoke", tokens["items"][0]["id"], cwd=tmp_path,
                                     LLM_GATEWAY_DATABASE_URL=sqlite_settings.database_url)
    assert result.returncode == 0, result.stderr

    async def refused() -> bool:
        return (await client.get("/api/admin/users", headers=user.headers)).status == 401

    await until(refused)
