"""A stored key goes only to the address it was saved with. An attacker holding the owner's gateway token (or an
operator, who can mint one) points the configuration at a hostile upstream of their own — a real server on
another port — and then calls Test and sends /v1 traffic: on every write path the move is refused unless the
key comes with it, so the hostile server never sees the stored key. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.configurations.crud import decrypt_key
from gateway.store.models import LLMConfiguration
from gateway.web.appkeys import KEYRING, SESSIONMAKER
from tests.factories import ApiUser, make_user
from tests.fakes.openai_upstream import FakeOpenAI, start_openai_upstream
from tests.security.conftest import MakeClient

CONFIGS = "/api/llm-configurations"
PASSPHRASE = "correct horse battery"


async def stored(client: TestClient, config_id: str) -> tuple[str, str | None, str]:
    """(provider, base_url, plaintext key) as the database holds them."""
    async with client.server.app[SESSIONMAKER]() as session:
        row = (await session.execute(
            select(LLMConfiguration).where(LLMConfiguration.id == uuid.UUID(config_id)))).scalar_one()
        return row.provider, row.base_url, decrypt_key(client.server.app[KEYRING], row)


async def victim(client: TestClient, legit: FakeOpenAI, key: str) -> tuple[ApiUser, dict[str, Any]]:
    """A user whose default configuration holds `key` for the legitimate upstream."""
    user = await make_user(client)
    resp = await client.post(CONFIGS, headers=user.headers, json={
        "name": "work", "provider": "custom", "model": "gpt-4o-mini", "api_key": key, "base_url": legit.url})
    assert resp.status == 201, await resp.text()
    return user, await resp.json()


async def use_it(client: TestClient, user: ApiUser, config: dict[str, Any]) -> None:
    """What the attacker does after the move: Test, then real traffic, streamed and not."""
    await client.post(f"{CONFIGS}/{config['id']}/test", headers=user.headers)
    for stream in (False, True):
        resp = await client.post("/v1/chat/completions", headers=user.headers, json={
            "model": "work", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
        await resp.read()


async def setup(make_client: MakeClient, aiohttp_server: Any, key: str
                ) -> tuple[TestClient, FakeOpenAI, FakeOpenAI, ApiUser, dict[str, Any]]:
    # Both upstreams on 127.0.0.1, told apart by their port: a port is part of the origin.
    client = await make_client(allow_private_base_urls=True)
    legit = await start_openai_upstream(aiohttp_server, keys=[key])
    hostile = await start_openai_upstream(aiohttp_server, keys=[])
    user, config = await victim(client, legit, key)
    return client, legit, hostile, user, config


async def test_moving_a_key_through_the_admin_api_needs_the_key(
    make_client: MakeClient, aiohttp_server: Any, new_key: Callable[..., str]
) -> None:
    key = new_key()
    client, legit, hostile, user, config = await setup(make_client, aiohttp_server, key)
    before = await stored(client, config["id"])
    for method in ("PATCH", "PUT"):
        for body in ({"base_url": hostile.url}, {"base_url": hostile.url, "api_key": config["api_key"]},
                     {"provider": "openai", "base_url": None}, {"provider": "openai"},
                     {"base_url": hostile.url.replace("http://", "https://")}):
            resp = await client.request(method, f"{CONFIGS}/{config['id']}", json=body, headers=user.headers)
            error = (await resp.json())["error"]
            assert resp.status == 422 and error["code"] == "key_required_for_new_origin", (method, body, error)
            assert error["param"] == "api_key"
    assert await stored(client, config["id"]) == before  # nothing changed
    await use_it(client, user, config)
    assert hostile.requests == []
    assert {r.api_key for r in legit.requests} == {key}  # the traffic went where the key was saved


async def test_same_origin_keeps_the_key_and_a_new_key_may_go_anywhere(
    make_client: MakeClient, aiohttp_server: Any, new_key: Callable[..., str]
) -> None:
    key = new_key()
    client, legit, hostile, user, config = await setup(make_client, aiohttp_server, key)
    # another path on the same origin keeps the key
    for base_url in (legit.root_url + "/v2/", legit.url):
        resp = await client.patch(f"{CONFIGS}/{config['id']}", json={"base_url": base_url}, headers=user.headers)
        assert resp.status == 200, await resp.text()
        assert (await stored(client, config["id"]))[1:] == (base_url.rstrip("/"), key)
    # the attacker's own key may be sent to the attacker's own server: it is theirs already
    own = new_key()
    resp = await client.patch(f"{CONFIGS}/{config['id']}", json={"base_url": hostile.url, "api_key": own},
                              headers=user.headers)
    assert resp.status == 200, await resp.text()
    await use_it(client, user, config)
    assert hostile.requests and {r.api_key for r in hostile.requests} == {own}


async def test_moving_a_key_through_legacy_settings_needs_the_key(
    make_client: MakeClient, aiohttp_server: Any, new_key: Callable[..., str]
) -> None:
    key = new_key()
    client, _, hostile, user, config = await setup(make_client, aiohttp_server, key)
    before = await stored(client, config["id"])
    for body in ({"llm_base_url": hostile.url}, {"llm_base_url": hostile.url, "llm_api_key": config["api_key"]},
                 {"llm_model": "openai/gpt-4o", "llm_base_url": ""}):
        resp = await client.post("/api/settings", json=body, headers=user.headers)
        error = (await resp.json())["error"]
        assert resp.status == 422 and error["code"] == "key_required_for_new_origin", (body, error)
    assert await stored(client, config["id"]) == before
    # clearing the key and moving in one post is allowed: no key moves
    resp = await client.post("/api/settings", json={"llm_base_url": hostile.url, "llm_api_key_clear": True},
                             headers=user.headers)
    assert resp.status == 200, await resp.text()
    await use_it(client, user, config)
    assert hostile.requests == []


async def test_a_plain_export_edited_to_point_elsewhere_does_not_move_the_key(
    make_client: MakeClient, aiohttp_server: Any, new_key: Callable[..., str]
) -> None:
    key = new_key()
    client, _, hostile, user, config = await setup(make_client, aiohttp_server, key)
    before = await stored(client, config["id"])
    export = await (await client.post(f"{CONFIGS}/export", json={}, headers=user.headers)).json()
    export["configurations"][0]["base_url"] = hostile.url
    for dry_run in (True, False):
        resp = await client.post(f"{CONFIGS}/import", headers=user.headers,
                                 json={"data": export, "overwrite": True, "dry_run": dry_run})
        report = await resp.json()
        assert resp.status == 200 and report["updated"] == [], report
        assert [e["code"] for e in report["errors"]] == ["key_required_for_new_origin"]
    assert await stored(client, config["id"]) == before
    await use_it(client, user, config)
    assert hostile.requests == []


async def test_a_sealed_export_edited_to_point_elsewhere_is_refused(
    make_client: MakeClient, aiohttp_server: Any, new_key: Callable[..., str]
) -> None:
    key = new_key()
    client, _, hostile, user, config = await setup(make_client, aiohttp_server, key)
    before = await stored(client, config["id"])
    export = await (await client.post(f"{CONFIGS}/export", json={"passphrase": PASSPHRASE},
                                      headers=user.headers)).json()
    assert export["version"] == 2
    for field, value in (("base_url", hostile.url), ("provider", "openai")):
        edited = {**export, "configurations": [{**export["configurations"][0], field: value}]}
        for target in (user, await make_user(client)):  # overwrite the victim's entry, or restore elsewhere
            resp = await client.post(f"{CONFIGS}/import", headers=target.headers,
                                     json={"data": edited, "passphrase": PASSPHRASE, "overwrite": True})
            error = (await resp.json())["error"]
            assert resp.status == 422 and error["code"] == "wrong_passphrase", error
    # a version-1 file bound keys to names only: its keys are refused, not restored
    old = {**export, "version": 1, "configurations": [{**export["configurations"][0], "base_url": hostile.url}]}
    resp = await client.post(f"{CONFIGS}/import", headers=user.headers,
                             json={"data": old, "passphrase": PASSPHRASE, "overwrite": True})
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "unsupported_export_version"
    assert await stored(client, config["id"]) == before
    await use_it(client, user, config)
    assert hostile.requests == []
    # the untouched export still restores its key
    other = await make_user(client)
    resp = await client.post(f"{CONFIGS}/import", headers=other.headers,
                             json={"data": export, "passphrase": PASSPHRASE})
    assert resp.status == 200 and (await resp.json())["keys_restored"] is True


async def test_with_key_export_off_a_token_holder_cannot_read_keys_out(
    make_client: MakeClient, new_key: Callable[..., str]
) -> None:
    # A passphrase the caller chooses opens what it seals: with exports of keys on, any holder of the token
    # can read the keys out. Off, the operator's power is to use keys through the gateway, never to read them.
    client = await make_client(allow_key_export=False)
    user = await make_user(client)
    resp = await client.post(CONFIGS, headers=user.headers, json={
        "name": "work", "provider": "openai", "model": "gpt-4o", "api_key": new_key()})
    assert resp.status == 201
    for resp in (await client.post(f"{CONFIGS}/export", json={"passphrase": PASSPHRASE}, headers=user.headers),
                 await client.get(f"{CONFIGS}/export", params={"passphrase": PASSPHRASE}, headers=user.headers)):
        error = (await resp.json())["error"]
        assert resp.status == 403 and error["code"] == "key_export_disabled", error
    plain = await client.post(f"{CONFIGS}/export", json={}, headers=user.headers)
    assert plain.status == 200 and all(c["api_key_sealed"] is None for c in (await plain.json())["configurations"])


async def test_origin_is_scheme_host_and_port_after_default_ports(
    client: TestClient, new_key: Callable[..., str]
) -> None:
    user = await make_user(client)
    key = new_key()
    resp = await client.post(CONFIGS, headers=user.headers, json={
        "name": "gpt", "provider": "openai", "model": "gpt-4o", "api_key": key})  # the catalog's default URL
    config = await resp.json()
    for base_url, status in (("https://API.openai.com:443/v1/", 200), ("https://api.openai.com/other", 200),
                             ("http://api.openai.com/v1", 422), ("https://api.openai.com:8443/v1", 422),
                             ("https://api.openai.com.evil.example/v1", 422), ("https://evil.example/v1", 422)):
        resp = await client.patch(f"{CONFIGS}/{config['id']}", json={"base_url": base_url}, headers=user.headers)
        assert resp.status == status, (base_url, await resp.text())
    assert (await stored(client, config["id"]))[2] == key
