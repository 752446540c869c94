"""Every write path validates the same way, and no import or export buys unbounded work: control characters in
names and models are refused on the admin API, /api/settings and import (legacy migration: tests/legacy/
test_legacy.py); an export sealed with a costlier scrypt is refused before any derivation; imports and exports
are rate-limited per user."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient

from tests.factories import make_user
from tests.security.conftest import MakeClient

CONFIGS = "/api/llm-configurations"
HOSTILE_TEXT = ["gpt-4o\x1b[2J", "gpt\x00", "line\nbreak", "bell\x07", "ne\x85l", "\u202egpt", "tab\there"]


async def test_control_characters_are_refused_on_every_write_path(
    client: TestClient, new_key: Callable[..., str]
) -> None:
    user = await make_user(client)
    resp = await client.post(CONFIGS, headers=user.headers, json={
        "name": "work", "provider": "openai", "model": "gpt-4o", "api_key": new_key()})
    config = await resp.json()
    export = await (await client.get(f"{CONFIGS}/export", headers=user.headers)).json()
    accepted: list[tuple[str, str, int]] = []
    for text in HOSTILE_TEXT:
        entry = {"provider": "openai", "model": "gpt-4o", "name": "imported"}
        attempts: list[tuple[str, str, dict[str, Any]]] = [
            ("POST", CONFIGS, {"name": text, "provider": "openai", "model": "m", "api_key": new_key()}),
            ("POST", CONFIGS, {"name": "n", "provider": "openai", "model": text, "api_key": new_key()}),
            ("PATCH", f"{CONFIGS}/{config['id']}", {"name": text}),
            ("PATCH", f"{CONFIGS}/{config['id']}", {"model": text}),
            ("POST", "/api/settings", {"llm_model": f"openai/{text}"}),
            ("POST", "/api/settings", {"llm_model": text, "llm_api_key": new_key()}),
            ("POST", f"{CONFIGS}/import", {"data": {**export, "configurations": [{**entry, "name": text}]}}),
            ("POST", f"{CONFIGS}/import", {"data": {**export, "configurations": [{**entry, "model": text}]}}),
        ]
        for method, path, body in attempts:
            resp = await client.request(method, path, json=body, headers=user.headers)
            if resp.status != 422:
                accepted.append((path, repr(text), resp.status))
    assert accepted == []  # collected, so one run names every hole
    listed = await (await client.get(CONFIGS, headers=user.headers)).json()
    assert [(c["name"], c["model"]) for c in listed["items"]] == [("work", "gpt-4o")]  # nothing changed


async def test_an_import_with_a_costlier_scrypt_is_refused_before_deriving(
    client: TestClient, new_key: Callable[..., str]
) -> None:
    user = await make_user(client)
    await client.post(CONFIGS, headers=user.headers, json={
        "name": "work", "provider": "openai", "model": "gpt-4o", "api_key": new_key()})
    export = await (await client.post(f"{CONFIGS}/export", json={"passphrase": "correct horse battery"},
                                      headers=user.headers)).json()
    salt = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    # Each of these would take seconds to gigabytes in scrypt; none may start.
    for field, value in (("n", 2**20), ("n", 2**16), ("r", 64), ("p", 16), ("n", 2**14), ("kdf", "argon2")):
        data = {**export, "encryption": {**export["encryption"], "salt": salt, field: value}}
        resp = await client.post(f"{CONFIGS}/import", headers=user.headers,
                                 json={"data": data, "passphrase": "correct horse battery"})
        error = (await resp.json())["error"]
        assert resp.status == 422 and error["param"] == f"data.encryption.{field}", (field, value, error)


async def test_imports_and_exports_share_a_per_user_budget(
    make_client: MakeClient, new_key: Callable[..., str]
) -> None:
    client = await make_client(tests_per_minute=3)
    alice, bob = await make_user(client), await make_user(client)
    export = await (await client.get(f"{CONFIGS}/export", headers=alice.headers)).json()
    for _ in range(2):
        resp = await client.post(f"{CONFIGS}/import", headers=alice.headers, json={"data": export})
        assert resp.status == 200
    resp = await client.post(f"{CONFIGS}/export", headers=alice.headers)
    assert resp.status == 429 and "Retry-After" in resp.headers
    resp = await client.post(f"{CONFIGS}/import", headers=alice.headers, json={"data": export})
    assert resp.status == 429
    assert (await client.get(f"{CONFIGS}/export", headers=bob.headers)).status == 200  # per user
