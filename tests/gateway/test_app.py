"""App skeleton: probes, the error envelope everywhere, token authentication, operator endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient

from tests.factories import make_user


def assert_envelope(body: dict, type_: str) -> None:  # type: ignore[type-arg]
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["type"] == type_
    assert body["error"]["message"]


async def test_probes(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 200 and (await resp.json())["status"] == "ready"


async def test_router_404_and_405_use_the_envelope(client: TestClient, admin_headers: dict[str, str]) -> None:
    resp = await client.get("/no/such/path")
    assert resp.status == 404
    assert_envelope(await resp.json(), "not_found_error")
    resp = await client.put("/healthz")
    assert resp.status == 405
    assert_envelope(await resp.json(), "invalid_request_error")
    resp = await client.get("/api/admin/nothing-here", headers=admin_headers)
    assert resp.status == 404
    assert_envelope(await resp.json(), "not_found_error")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer lgw_unknown",
        "Bearer " + "x" * 5000,
        "Bearer ' OR 1=1 --",
        "Bearer lgw_'; DROP TABLE users; --",
        "Bearer \u00e9\u00e9\u00e9",
    ],
)
async def test_bad_tokens_are_401_never_500(client: TestClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for path in ("/api/admin/users", "/api/openapi-missing"):
        resp = await client.get(path, headers=headers)
        assert resp.status == 401, (header, path)
        assert_envelope(await resp.json(), "authentication_error")


async def test_operator_creates_users_and_tokens(client: TestClient, admin_headers: dict[str, str]) -> None:
    resp = await client.post("/api/admin/users", json={"name": "alice", "is_admin": False}, headers=admin_headers)
    assert resp.status == 201
    alice = await resp.json()
    assert set(alice) == {"id", "name", "is_admin", "token"} and alice["token"].startswith("lgw_")

    resp = await client.post("/api/admin/users", json={"name": "alice"}, headers=admin_headers)
    assert resp.status == 409

    resp = await client.get("/api/admin/users", headers=admin_headers)
    listed = await resp.json()
    assert [u["name"] for u in listed["items"]] == ["alice"] and "token" not in listed["items"][0]

    resp = await client.post(f"/api/admin/users/{alice['id']}/tokens", json={"name": "laptop"}, headers=admin_headers)
    assert resp.status == 201
    second = await resp.json()
    assert second["token"] != alice["token"]

    resp = await client.get(f"/api/admin/users/{alice['id']}/tokens", headers=admin_headers)
    tokens = (await resp.json())["items"]
    assert len(tokens) == 2 and all("token" not in t and "token_hash" not in t for t in tokens)


async def test_non_admin_gets_403_and_admin_user_is_allowed(client: TestClient) -> None:
    plain = await make_user(client)
    boss = await make_user(client, is_admin=True)
    assert (await client.get("/api/admin/users", headers=plain.headers)).status == 403
    assert (await client.get("/api/admin/users", headers=boss.headers)).status == 200


async def test_revoked_token_is_refused_at_once(client: TestClient, admin_headers: dict[str, str]) -> None:
    boss = await make_user(client, is_admin=True)
    assert (await client.get("/api/admin/users", headers=boss.headers)).status == 200  # now cached
    resp = await client.get(f"/api/admin/users/{boss.id}/tokens", headers=admin_headers)
    (token,) = (await resp.json())["items"]
    assert (await client.delete(f"/api/admin/tokens/{token['id']}", headers=admin_headers)).status == 204
    resp = await client.get("/api/admin/users", headers=boss.headers)
    assert resp.status == 401
    assert_envelope(await resp.json(), "authentication_error")


async def test_expired_token_is_401(client: TestClient, admin_headers: dict[str, str]) -> None:
    boss = await make_user(client, is_admin=True)
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    resp = await client.post(f"/api/admin/users/{boss.id}/tokens", json={"expires_at": past}, headers=admin_headers)
    expired = (await resp.json())["token"]
    resp = await client.get("/api/admin/users", headers={"Authorization": f"Bearer {expired}"})
    assert resp.status == 401
    assert "expired" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ("{not json", 400, "body"),
        ("[1, 2]", 400, "body"),
        ('{"name": "ok", "user_id": "x"}', 422, "user_id"),
        ('{"name": ""}', 422, "name"),
        ('{"name": 12}', 422, "name"),
        ('{"is_admin": true}', 422, "name"),
    ],
)
async def test_operator_bad_bodies(
    client: TestClient, admin_headers: dict[str, str], body: str, status: int, param: str
) -> None:
    resp = await client.post(
        "/api/admin/users", data=body, headers={**admin_headers, "Content-Type": "application/json"}
    )
    assert resp.status == status
    error = (await resp.json())["error"]
    assert error["param"] == param
    assert (await (await client.get("/api/admin/users", headers=admin_headers)).json())["total"] == 0


async def test_unknown_ids_are_404(client: TestClient, admin_headers: dict[str, str]) -> None:
    for path in ("/api/admin/tokens/not-a-uuid", "/api/admin/tokens/00000000-0000-0000-0000-000000000000"):
        resp = await client.delete(path, headers=admin_headers)
        assert resp.status == 404
    resp = await client.post("/api/admin/users/00000000-0000-0000-0000-000000000000/tokens", json={},
                             headers=admin_headers)
    assert resp.status == 404


async def test_forwarded_headers_do_not_change_the_caller(client: TestClient) -> None:
    plain = await make_user(client)
    headers = {**plain.headers, "Host": "admin.internal", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-User": "admin"}
    assert (await client.get("/api/admin/users", headers=headers)).status == 403
