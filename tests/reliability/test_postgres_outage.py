"""PostgreSQL stopped under a running gateway (a subprocess on a private cluster): cached traffic keeps flowing,
admin calls get a clear 503, and once the database is back everything recovers without a restart and nothing
acknowledged before the outage is lost — the usage of requests served during the outage included."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN
from tests.reliability.processes import Gateway, PrivateCluster

CHAT = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}


def eventually(check: Any, timeout: float = 15.0) -> Any:
    """Poll check() until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_database_outage_is_survived(cluster: PrivateCluster, gateway_env: dict[str, str], upstream_key: str,
                                     standalone_upstream: str, tmp_path: Path) -> None:
    gateway = Gateway(gateway_env, tmp_path / "gateway.log")
    http = httpx.Client(base_url=gateway.url, timeout=10)
    try:
        user = http.post("/api/admin/users", json={"name": "outage"},
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
        auth = {"Authorization": f"Bearer {user['token']}"}
        created = http.post("/api/llm-configurations", headers=auth, json={
            "name": "main", "provider": "custom", "model": "gpt-4o-mini", "api_key": upstream_key,
            "base_url": standalone_upstream})
        assert created.status_code == 201  # acknowledged before the outage
        assert http.post("/v1/chat/completions", headers=auth, json=CHAT).status_code == 200
        assert eventually(lambda: http.get("/api/usage", headers=auth).json()["totals"]["requests"] == 1)

        cluster.stop()
        assert http.get("/readyz").status_code == 503
        for stream in (False, True, False):
            served = http.post("/v1/chat/completions", headers=auth, json={**CHAT, "stream": stream})
            assert served.status_code == 200, served.text  # configuration and token come from the caches
        for method, path, body in (("POST", "/api/llm-configurations", {
                "name": "during", "provider": "openai", "model": "gpt-4o", "api_key": upstream_key}),
                ("PATCH", f"/api/llm-configurations/{created.json()['id']}", {"model": "gpt-4o"}),
                ("GET", "/api/llm-configurations", None)):
            refused = http.request(method, path, headers=auth, json=body)
            assert refused.status_code == 503, (method, path, refused.status_code, refused.text)
            error = refused.json()["error"]
            assert error["code"] == "database_unavailable" and "database" in error["message"].lower()

        cluster.start()
        after = eventually(lambda: http.post("/api/llm-configurations", headers=auth, json={
            "name": "after", "provider": "openai", "model": "gpt-4o", "api_key": upstream_key}).status_code == 201)
        assert after, "admin writes did not recover without a restart"
        assert http.get("/readyz").status_code == 200
        assert http.post("/v1/chat/completions", headers=auth, json=CHAT).status_code == 200
        names = {c["name"]: c for c in http.get("/api/llm-configurations", headers=auth).json()["items"]}
        assert set(names) == {"main", "after"}
        assert names["main"]["model"] == "gpt-4o-mini"  # the refused PATCH changed nothing
        # The three requests served during the outage were kept and written once the database came back.
        assert eventually(lambda: http.get("/api/usage", headers=auth).json()["totals"]["requests"] == 5)
        assert gateway.process.poll() is None  # never restarted
    finally:
        http.close()
        gateway.stop()
    assert upstream_key not in (tmp_path / "gateway.log").read_text()
