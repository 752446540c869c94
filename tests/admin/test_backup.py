"""Export and import: no keys without a passphrase, keys sealed under one (scrypt + AES-GCM), export → delete →
import restores working keys with the passphrase and refuses without it or with a wrong one; merge by name,
dry runs, conflicts."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.configurations.crud import decrypt_key, delete_configurations, list_user_configurations
from gateway.store.models import LLMConfiguration
from gateway.web.appkeys import KEYRING, SESSIONMAKER
from tests.conftest import ADMIN_TOKEN
from tests.factories import ApiUser, make_configuration, make_user

PASSPHRASE = "correct horse battery staple"


async def _setup(client: TestClient) -> tuple[ApiUser, dict[str, str]]:
    user = await make_user(client)
    first = await make_configuration(client, user, name="work", model="gpt-4o")
    second = await make_configuration(client, user, name="backup", provider="anthropic",
                                      model="claude-3-5-haiku-20241022", fallback_ids=[first["id"]])
    return user, {"work": first["api_key"], "backup": second["api_key"]}


async def _keys(client: TestClient, user: ApiUser) -> dict[str, str]:
    app = client.server.app
    async with app[SESSIONMAKER]() as session:
        rows = await list_user_configurations(session, user_id=uuid.UUID(user.id))
        return {r.name: decrypt_key(app[KEYRING], r) for r in rows if r.is_active}


async def _delete_all(client: TestClient, user: ApiUser) -> None:
    async with client.server.app[SESSIONMAKER]() as session:
        ids = [r.id for r in await list_user_configurations(session, user_id=uuid.UUID(user.id))]
        await delete_configurations(session, user_id=uuid.UUID(user.id), ids=ids)
        await session.commit()


async def _import(client: TestClient, user: ApiUser, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    resp = await client.post("/api/llm-configurations/import", json=body, headers=user.headers)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_export_delete_import_restores_working_keys(client: TestClient) -> None:
    user, keys = await _setup(client)
    resp = await client.post("/api/llm-configurations/export", json={"passphrase": PASSPHRASE}, headers=user.headers)
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    raw = await resp.text()
    assert all(k not in raw and k[-8:] not in raw for k in keys.values())
    export = await resp.json()
    assert export["encryption"]["kdf"] == "scrypt" and export["encryption"]["salt"]
    await _delete_all(client, user)

    refused = await _import(client, user, {"data": export}, 422)
    assert refused["error"]["param"] == "passphrase" and refused["error"]["code"] == "passphrase_required"
    wrong = await _import(client, user, {"data": export, "passphrase": "not the passphrase"}, 422)
    assert wrong["error"]["code"] == "wrong_passphrase"
    assert await _keys(client, user) == {}  # a refused import changes nothing

    dry = await _import(client, user, {"data": export, "passphrase": PASSPHRASE, "dry_run": True})
    assert sorted(dry["created"]) == ["backup", "work"] and dry["keys_restored"] and await _keys(client, user) == {}
    report = await _import(client, user, {"data": export, "passphrase": PASSPHRASE})
    assert sorted(report["created"]) == ["backup", "work"] and report["needs_key"] == []
    assert await _keys(client, user) == keys
    async with client.server.app[SESSIONMAKER]() as session:
        rows = {r.name: r for r in await list_user_configurations(session, user_id=uuid.UUID(user.id))}
    assert rows["work"].is_default and rows["backup"].fallback_ids == [str(rows["work"].id)]

    again = await _import(client, user, {"data": export, "passphrase": PASSPHRASE})
    assert sorted(again["unchanged"]) == ["backup", "work"] and again["created"] == []


async def test_export_without_passphrase_has_no_keys(client: TestClient) -> None:
    user, keys = await _setup(client)
    resp = await client.get("/api/llm-configurations/export", headers=user.headers)
    export, raw = await resp.json(), await resp.text()
    assert export["encryption"] is None and all(c["api_key_sealed"] is None for c in export["configurations"])
    assert all(k not in raw for k in keys.values())
    # the query form works too (POST is preferred: query strings reach access logs)
    resp = await client.get("/api/llm-configurations/export", params={"passphrase": PASSPHRASE}, headers=user.headers)
    assert all(c["api_key_sealed"] for c in (await resp.json())["configurations"])
    short = await client.get("/api/llm-configurations/export", params={"passphrase": "short"}, headers=user.headers)
    assert short.status == 422 and (await short.json())["error"]["param"] == "passphrase"
    # a keyless export imported elsewhere arrives inactive, waiting for its key
    other = await make_user(client)
    report = await _import(client, other, {"data": export})
    assert sorted(report["needs_key"]) == ["backup", "work"] and not report["keys_restored"]
    assert await _keys(client, other) == {}


async def test_merge_by_name_reports_conflicts(client: TestClient) -> None:
    user, keys = await _setup(client)
    export = await (await client.post("/api/llm-configurations/export", json={"passphrase": PASSPHRASE},
                                      headers=user.headers)).json()
    export["configurations"][0]["model"] = "gpt-4.1"  # "work" (the default comes first)
    export["configurations"].append({"name": "extra", "provider": "custom", "model": "m"})  # needs a base_url
    report = await _import(client, user, {"data": export, "passphrase": PASSPHRASE})
    assert report["conflicts"] == [{"name": "work", "fields": ["model"]}]
    assert report["unchanged"] == ["backup"] and report["errors"][0]["name"] == "extra"
    async with client.server.app[SESSIONMAKER]() as session:
        models = dict((await session.execute(select(LLMConfiguration.name, LLMConfiguration.model))).all())
    assert models["work"] == "gpt-4o"
    report = await _import(client, user, {"data": export, "passphrase": PASSPHRASE, "overwrite": True})
    assert report["updated"] == ["work"]
    assert await _keys(client, user) == keys


async def test_bad_import_bodies(client: TestClient) -> None:
    user, _ = await _setup(client)
    export = await (await client.get("/api/llm-configurations/export", headers=user.headers)).json()
    for body, param in (
        ({"data": {**export, "format": "other"}}, "data.format"),
        ({"data": {**export, "configurations": export["configurations"] * 2}}, "data.configurations"),
        ({"data": {**export, "user_id": user.id}}, "data.user_id"),
        ({"data": {**export, "encryption": {"salt": "AAAA", "n": 2**30}}}, "data.encryption.n"),
        ({"data": export, "extra": 1}, "extra"),
    ):
        error = await _import(client, user, body, 422)
        assert error["error"]["param"] == param, body
    operator_only = await client.get("/api/llm-configurations/export",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert operator_only.status == 403
