"""A database the gateway cannot reach is a retryable 503 naming the database, never a 500 (the PostgreSQL
outage itself is test_postgres_outage.py; this is the same boundary on SQLite, in-process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.settings import Settings


async def test_unreachable_database_is_503_database_unavailable(aiohttp_client: Any, settings: Settings,
                                                                admin_headers: dict[str, str], tmp_path: Path) -> None:
    gone = settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'g.db'}"})
    client = await aiohttp_client(create_app(gone))
    for method, path in (("GET", "/api/admin/users"), ("POST", "/api/admin/users"), ("GET", "/readyz")):
        resp = await client.request(method, path, headers=admin_headers, json={"name": "x"})
        assert resp.status == 503, await resp.text()
        error = (await resp.json())["error"]
        assert "database" in error["message"].lower()
    resp = await client.get("/api/admin/users", headers=admin_headers)
    assert (await resp.json())["error"]["code"] == "database_unavailable" and resp.headers["Retry-After"] == "5"
