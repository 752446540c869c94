"""Mass assignment and oversized bodies on every documented operation that takes a body, and on the proxy."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import text

from gateway.web.appkeys import ENGINE
from tests.conftest import TABLES
from tests.factories import make_user
from tests.security.conftest import MakeClient
from tests.security.test_object_access import operations

CONFIGS = "/api/llm-configurations"
# Fields a caller must never set, whatever the route.
SMUGGLED = {"user_id": str(uuid.uuid4()), "api_key_encrypted": "v1.t1.AAAA", "key_id": "t0", "is_admin": True,
            "created_at": "2020-01-01T00:00:00Z", "id": str(uuid.uuid4())}


# OpenHands' settings endpoint: its clients post their whole settings object back, so fields the gateway does
# not own are ignored there (documented in gateway/legacy/compat.py) — ignored must still mean nothing changes.
LENIENT = {"POST /api/settings"}


# change_log is a queue of cache invalidations, not data (POST /api/settings announces one even when it
# changed nothing: harmless, listed for the lead).
DATA_TABLES = tuple(t for t in TABLES if t != "change_log")


def valid_bodies(config_id: str, key: str, member: str = "") -> dict[str, dict[str, Any]]:
    """A body each documented operation would accept."""
    config = {"name": "n2", "provider": "openai", "model": "gpt-4o", "api_key": key}
    team = "/api/teams/{team_id}"
    return {
        "POST /api/teams": {"name": f"t-{uuid.uuid4().hex[:6]}"},
        f"PATCH {team}": {"name": f"t-{uuid.uuid4().hex[:6]}"},
        f"POST {team}/members": {"user": member},
        f"PATCH {team}/members/{{user_id}}": {"role": "owner"},
        f"POST {team}/llm-configurations": config,
        f"POST {team}/llm-configurations/share": {"configuration_id": config_id},
        f"POST {team}/llm-configurations/export": {},
        f"POST {team}/llm-configurations/import": {"data": {"configurations": []}, "dry_run": True},
        f"POST {CONFIGS}": config,
        f"PATCH {CONFIGS}/{{id}}": {"name": "renamed"},
        f"PUT {CONFIGS}/{{id}}": {"name": "renamed"},
        f"POST {CONFIGS}/test": {"provider": "openai", "model": "gpt-4o", "api_key": key},
        f"POST {CONFIGS}/bulk-delete": {"ids": [config_id]},
        f"POST {CONFIGS}/export": {},
        f"POST {CONFIGS}/import": {"data": {"version": 1, "configurations": []}, "dry_run": True},
        "PUT /api/conversations/{conversation_id}/llm-configuration": {"configuration_id": config_id},
        "POST /api/settings": {},
        "POST /api/admin/users": {"name": f"u-{uuid.uuid4().hex[:6]}"},
        "PATCH /api/admin/teams/{team_id}": {"name": f"t-{uuid.uuid4().hex[:6]}"},
        "POST /api/admin/teams/{team_id}/members": {"user": member},
        "PATCH /api/admin/teams/{team_id}/members/{user_id}": {"role": "owner"},
        "POST /api/admin/users/{id}/tokens": {"name": "t"},
        "POST /api/admin/migrations/legacy-settings": {"dry_run": True},
        "POST /api/admin/encryption/rotate": {"batch_size": 10, "max_batches": 1},
        "POST /api/templates/{id}/apply": {"inputs": {}},
    }


async def database(client: TestClient, tables: tuple[str, ...] = TABLES) -> list[Any]:
    """Every row of every table (last_used_at aside, which reads may touch)."""
    rows: list[Any] = []
    async with client.server.app[ENGINE].connect() as conn:
        for table in tables:
            result = (await conn.execute(text(f"SELECT * FROM {table}"))).mappings()
            rows.append(sorted(repr({k: v for k, v in row.items() if k != "last_used_at"}) for row in result))
    return rows


async def test_unknown_fields_are_422_on_every_body_and_change_nothing(
    client: TestClient, admin_headers: dict[str, str], new_key: Callable[..., str]
) -> None:
    user = await make_user(client)
    resp = await client.post(CONFIGS, headers=user.headers, json={
        "name": "n1", "provider": "openai", "model": "gpt-4o-mini", "api_key": new_key()})
    config_id = (await resp.json())["id"]
    member = await make_user(client)
    team = await (await client.post("/api/teams", headers=user.headers, json={"name": "bodies"})).json()
    bodies = valid_bodies(config_id, new_key(), member.name)
    # /v1 bodies are OpenAI's and passed on as sent (the document says additionalProperties: true).
    with_body = [(m, p) for m, p, op in await operations(client) if "requestBody" in op and p.startswith("/api/")]
    assert sorted(f"{m} {p}" for m, p in with_body) == sorted(bodies), "a new operation with a body: add it"
    before = await database(client, DATA_TABLES)
    accepted = []
    for method, template in with_body:
        headers = admin_headers if template.startswith("/api/admin/") else user.headers
        path = template.format(id=config_id if "llm-configurations" in template else user.id, conversation_id="c1",
                               team_id=team["id"], user_id=user.id)
        for name, value in SMUGGLED.items():
            if (template, name) == ("/api/admin/users", "is_admin"):
                continue  # a real field there, for the operator
            resp = await client.request(method, path, headers=headers,
                                        json={**bodies[f"{method} {template}"], name: value})
            error = (await resp.json()).get("error", {})
            if f"{method} {template}" in LENIENT:
                if resp.status != 200:
                    accepted.append((method, template, name, resp.status, None))
            elif resp.status != 422 or error.get("param") != name or str(value) in error.get("message", ""):
                accepted.append((method, template, name, resp.status, error.get("param")))
    # Nested objects are strict too: a configuration inside an import document.
    resp = await client.post(f"{CONFIGS}/import", headers=user.headers, json={"data": {"version": 1, "configurations": [
        {"name": "x", "provider": "openai", "model": "m", "user_id": SMUGGLED["user_id"]}]}})
    assert resp.status == 422
    assert accepted == []
    assert await database(client, DATA_TABLES) == before


async def test_oversized_bodies_are_413_everywhere(make_client: MakeClient, admin_headers: dict[str, str]) -> None:
    client = await make_client(max_body_bytes=1024)
    user = await make_user(client)
    huge = {"name": "x" * 4096}
    paths = [(m, p) for m, p, op in await operations(client) if "requestBody" in op and p.startswith("/api/")]
    paths += [("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings"), ("POST", "/v1/completions"),
              ("POST", "/v1/responses")]
    # The proxy's refusals are accounted (a usage row with status 413): every other table stays as it was.
    tables = tuple(t for t in DATA_TABLES if t != "usage_records")
    before = await database(client, tables)
    wrong = []
    for method, template in paths:
        headers = admin_headers if template.startswith("/api/admin/") else user.headers
        path = template.format(id=uuid.uuid4(), conversation_id="c1", team_id=uuid.uuid4(), user_id=uuid.uuid4())
        resp = await client.request(method, path, headers=headers, json=huge)
        chunked = await client.request(method, path, headers={**headers, "Content-Type": "application/json"},
                                       data=_chunks(b"{" + b" " * 4096 + b"}"))
        for answer in (resp, chunked):
            body = await answer.json()
            if answer.status != 413 or body["error"]["code"] != "payload_too_large":
                wrong.append((method, template, answer.status))
    assert wrong == []
    assert await database(client, tables) == before


async def _chunks(data: bytes) -> Any:
    """A body without Content-Length (chunked transfer): the limit must hold on what arrives, too."""
    for start in range(0, len(data), 512):
        yield data[start:start + 512]
