"""A database the gateway cannot reach is a retryable 503 naming the database, never a 500 (the PostgreSQL
outage itself is test_postgres_outage.py; this is the same boundary on SQLite, in-process)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from gateway.app import create_app
from gateway.settings import Settings
from gateway.web.appkeys import ENGINE
from tests.conftest import ADMIN_TOKEN


async def test_unreachable_database_is_503_database_unavailable(aiohttp_client: Any, sqlite_template: Path,
                                                                key_ring: str, tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    shutil.copyfile(sqlite_template, folder / "g.db")
    settings = Settings(database_url=f"sqlite+aiosqlite:///{folder / 'g.db'}", encryption_keys=SecretStr(key_ring),
                        admin_token=SecretStr(ADMIN_TOKEN), data_dir=tmp_path / "data")
    client = await aiohttp_client(create_app(settings))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert (await client.get("/api/admin/users", headers=headers)).status == 200
    folder.rename(tmp_path / "elsewhere")  # the database is gone from where the gateway looks for it
    await client.server.app[ENGINE].dispose()
    for method, path in (("GET", "/api/admin/users"), ("POST", "/api/admin/users"), ("GET", "/readyz")):
        resp = await client.request(method, path, headers=headers, json={"name": "x"})
        assert resp.status == 503, await resp.text()
        assert "database" in (await resp.json())["error"]["message"].lower()
    resp = await client.get("/api/admin/users", headers=headers)
    assert (await resp.json())["error"]["code"] == "database_unavailable" and resp.headers["Retry-After"] == "5"
    (tmp_path / "elsewhere").rename(folder)
    assert (await client.get("/api/admin/users", headers=headers)).status == 200  # and back, without a restart
