"""The configurations admin API end to end, on SQLite and PostgreSQL: CRUD, masking that never loses a key,
strict validation, isolation, the one default, limits, change notifications."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from gateway.store.changes import Change
from gateway.store.models import LLMConfiguration
from gateway.web.appkeys import CHANGES, KEYRING, SESSIONMAKER
from tests.admin.conftest import MakeClient
from tests.admin.helpers import URL, create, defaults, mask, row, stored_key
from tests.factories import make_user
from tests.fakes.openai_upstream import start_openai_upstream

NewKey = Callable[..., str]
OBJECT_FIELDS = {"id", "name", "provider", "model", "base_url", "is_default", "is_active", "fallback_ids", "api_key",
                 "test_status", "test_message", "test_latency_ms", "tested_at", "last_used_at", "created_at",
                 "updated_at", "team"}


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    """Assert the status and OpenAI's envelope; return the error object."""
    body = await resp.json()
    assert resp.status == status, body
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}
    error: dict[str, Any] = body["error"]
    return error


async def test_create_get_list_and_first_is_default(client: TestClient, new_key: NewKey) -> None:
    user = await make_user(client)
    key = new_key()
    first = await create(client, user, key, name="b-work", is_default=False)
    assert set(first) == OBJECT_FIELDS
    assert first["api_key"] == mask(key) and first["is_default"] and first["is_active"]
    assert first["test_status"] == "untested" and first["fallback_ids"] == [] and first["base_url"] is None
    second = await create(client, user, new_key(), name="a-home", model="gpt-4o")
    assert not second["is_default"]
    third = await create(client, user, new_key(), name="C-other")

    resp = await client.get(f"{URL}/{first['id']}", headers=user.headers)
    assert resp.status == 200 and await resp.json() == first
    resp = await client.get(URL, headers=user.headers)
    listing = await resp.json()
    assert listing["total"] == 3
    # Default first, then by name (case-insensitively).
    assert [c["id"] for c in listing["items"]] == [first["id"], second["id"], third["id"]]
    assert await stored_key(client, first["id"]) == key


@pytest.mark.parametrize("length", [8, 9, 15])
async def test_short_keys_mask_as_stars_and_the_stars_keep_them(client: TestClient, new_key: NewKey,
                                                                 length: int) -> None:
    user = await make_user(client)
    key = new_key(length)
    config = await create(client, user, key)
    assert config["api_key"] == "****"  # first 4 + last 4 of a 9-character key would show 8 of them
    resp = await client.patch(f"{URL}/{config['id']}", json={"api_key": "****", "model": "gpt-4o"},
                              headers=user.headers)
    assert resp.status == 200, await resp.text()
    assert await stored_key(client, config["id"]) == key


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_absent_null_or_mask_keep_the_key(client: TestClient, new_key: NewKey, method: str) -> None:
    user = await make_user(client)
    key = new_key()
    config = await create(client, user, key)
    ciphertext = (await row(client, config["id"])).api_key_encrypted
    for body in ({"model": "gpt-4.1"}, {"api_key": None, "name": "renamed"}, {"api_key": config["api_key"]},
                 {"api_key": config["api_key"], "is_active": False}):
        resp = await client.request(method, f"{URL}/{config['id']}", json=body, headers=user.headers)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["api_key"] == mask(key)
    stored = await row(client, config["id"])
    assert stored.api_key_encrypted == ciphertext  # not even re-encrypted
    assert (stored.name, stored.model, stored.is_active) == ("renamed", "gpt-4.1", False)


@pytest.mark.parametrize(
    "placeholder", ["**********", "****", "********************", "<hidden>", "SET", "set", "redacted", "•••••",
                    "sk-a...wxyz", "   ", "undefined"]
)
async def test_placeholders_are_refused_and_never_stored(client: TestClient, new_key: NewKey, placeholder: str) -> None:
    user = await make_user(client)
    key = new_key()
    config = await create(client, user, key)
    resp = await client.patch(f"{URL}/{config['id']}", json={"api_key": placeholder, "name": "changed"},
                              headers=user.headers)
    error = await error_of(resp, 422)
    assert error["param"] == "api_key"
    stored = await row(client, config["id"])
    assert await stored_key(client, config["id"]) == key and stored.name == config["name"]  # nothing applied
    resp = await client.post(URL, json={"name": "x", "provider": "openai", "model": "m", "api_key": placeholder},
                             headers=user.headers)
    assert (await error_of(resp, 422))["param"] == "api_key"


async def test_a_real_new_key_replaces_and_is_reencrypted(client: TestClient, new_key: NewKey) -> None:
    user = await make_user(client)
    config = await create(client, user, new_key())
    before = await row(client, config["id"])
    replacement = new_key()
    resp = await client.put(f"{URL}/{config['id']}", json={"api_key": replacement}, headers=user.headers)
    assert resp.status == 200 and (await resp.json())["api_key"] == mask(replacement)
    after = await row(client, config["id"])
    assert after.api_key_encrypted != before.api_key_encrypted
    assert after.key_id == client.server.app[KEYRING].primary_id
    assert await stored_key(client, config["id"]) == replacement


@pytest.mark.parametrize("field", ["id", "user_id", "api_key_encrypted", "key_id", "created_at", "updated_at",
                                   "test_status", "surprise"])
async def test_unknown_fields_are_422_naming_the_field(client: TestClient, new_key: NewKey, field: str) -> None:
    user = await make_user(client)
    config = await create(client, user, new_key())
    body = {"name": "n", "provider": "openai", "model": "m", "api_key": new_key(), field: "value-xyz"}
    for method, url in (("POST", URL), ("PATCH", f"{URL}/{config['id']}"), ("PUT", f"{URL}/{config['id']}")):
        resp = await client.request(method, url, json=body, headers=user.headers)
        error = await error_of(resp, 422)
        assert error["param"] == field and "value-xyz" not in error["message"]
    assert (await client.get(URL, headers=user.headers)).status == 200
    assert (await (await client.get(URL, headers=user.headers)).json())["total"] == 1


@pytest.mark.parametrize("raw", [b"{", b"{'name': 1}", b"[1, 2]", b"null", b"\xff\xfe", b'"text"'])
async def test_malformed_json_is_400(client: TestClient, new_key: NewKey, raw: bytes) -> None:
    user = await make_user(client)
    config = await create(client, user, new_key())
    headers = {**user.headers, "Content-Type": "application/json"}
    for method, url in (("POST", URL), ("PATCH", f"{URL}/{config['id']}"), ("POST", f"{URL}/bulk-delete")):
        resp = await client.request(method, url, data=raw, headers=headers)
        assert (await error_of(resp, 400))["param"] == "body"


SECRET_INPUT = "secret-input-7f3a"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"name": ""}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"name": "   "}, "name"),
        ({"name": f"{SECRET_INPUT}\x00"}, "name"),
        ({"name": 5}, "name"),
        ({"provider": SECRET_INPUT}, "provider"),
        ({"provider": "custom"}, "base_url"),
        ({"model": ""}, "model"),
        ({"model": f"{SECRET_INPUT}\n"}, "model"),
        ({"api_key": ""}, "api_key"),
        ({"api_key": "k" * 4097}, "api_key"),
        ({"api_key": f"sk-{SECRET_INPUT}\x07bell"}, "api_key"),
        ({"api_key": f" sk-{SECRET_INPUT}"}, "api_key"),
        ({"base_url": f"ftp://{SECRET_INPUT}.example.com"}, "base_url"),
        ({"base_url": f"https://user:{SECRET_INPUT}@api.example.com/v1"}, "base_url"),
        ({"base_url": "http://169.254.169.254/latest/meta-data"}, "base_url"),
        ({"base_url": "http://metadata.google.internal/v1"}, "base_url"),
        ({"base_url": "http://[fe80::1]/v1"}, "base_url"),
        ({"base_url": "http://169.254.10.10/v1"}, "base_url"),
        ({"fallback_ids": [SECRET_INPUT]}, "fallback_ids.0"),
        ({"fallback_ids": [str(uuid.uuid4())]}, "fallback_ids"),
        ({"is_active": "maybe"}, "is_active"),
    ],
)
async def test_validation_names_the_field_and_never_echoes(
    client: TestClient, new_key: NewKey, fields: dict[str, Any], param: str
) -> None:
    user = await make_user(client)
    body = {"name": "ok", "provider": "openai", "model": "gpt-4o", "api_key": new_key(), **fields}
    resp = await client.post(URL, json=body, headers=user.headers)
    error = await error_of(resp, 422)
    assert error["param"] == param
    assert SECRET_INPUT not in await resp.text() and "169.254" not in error["message"]
    # The same value through an update is refused the same way and changes nothing.
    config = await create(client, user, new_key())
    resp = await client.patch(f"{URL}/{config['id']}", json=fields, headers=user.headers)
    assert (await error_of(resp, 422))["param"] == param
    assert SECRET_INPUT not in await resp.text()
    assert (await (await client.get(f"{URL}/{config['id']}", headers=user.headers)).json()) == config


async def test_null_is_refused_where_it_means_nothing(client: TestClient, new_key: NewKey) -> None:
    user = await make_user(client)
    config = await create(client, user, new_key())
    for field in ("name", "provider", "model", "is_active", "is_default", "fallback_ids"):
        resp = await client.patch(f"{URL}/{config['id']}", json={field: None}, headers=user.headers)
        assert (await error_of(resp, 422))["param"] == field


async def test_private_base_urls_follow_the_setting(make_client: MakeClient, new_key: NewKey) -> None:
    strict = await make_client(allow_private_base_urls=False)
    user = await make_user(strict)
    for url in ("http://127.0.0.1:11434/v1", "http://10.0.0.5/v1", "http://localhost:8000/v1", "http://[::1]/v1",
                "http://192.168.1.10/v1"):
        resp = await strict.post(URL, json={"name": "local", "provider": "custom", "model": "llama3",
                                            "api_key": new_key(), "base_url": url}, headers=user.headers)
        error = await error_of(resp, 422)
        assert error["param"] == "base_url" and "ALLOW_PRIVATE_BASE_URLS" in error["message"]
    config = await create(strict, user, new_key(), provider="custom", base_url="https://llm.example.com/v1/")
    assert config["base_url"] == "https://llm.example.com/v1"
    relaxed = await make_client(allow_private_base_urls=True)
    local = await create(relaxed, user, new_key(), provider="custom", base_url="http://127.0.0.1:11434/v1")
    assert local["base_url"] == "http://127.0.0.1:11434/v1"
    resp = await relaxed.patch(f"{URL}/{local['id']}", json={"base_url": "http://169.254.169.254/"},
                               headers=user.headers)
    assert (await error_of(resp, 422))["param"] == "base_url"  # metadata is refused even then


async def test_custom_needs_a_base_url_and_null_removes_one(client: TestClient, new_key: NewKey) -> None:
    user = await make_user(client)
    config = await create(client, user, new_key(), provider="custom", base_url="https://llm.example.com/v1")
    resp = await client.patch(f"{URL}/{config['id']}", json={"base_url": None}, headers=user.headers)
    assert (await error_of(resp, 422))["param"] == "base_url"
    # another provider sends the key elsewhere: it comes with the key
    resp = await client.patch(f"{URL}/{config['id']}", json={"provider": "groq", "base_url": None,
                                                             "api_key": new_key()}, headers=user.headers)
    assert resp.status == 200 and (await resp.json())["base_url"] is None


async def test_duplicate_names_are_409(client: TestClient, new_key: NewKey) -> None:
    alice, bob = await make_user(client), await make_user(client)
    await create(client, alice, new_key(), name="work")
    other = await create(client, alice, new_key(), name="home")
    resp = await client.post(URL, json={"name": "work", "provider": "openai", "model": "m", "api_key": new_key()},
                             headers=alice.headers)
    error = await error_of(resp, 409)
    assert error["param"] == "name" and error["code"] == "duplicate_name" and "work" not in error["message"]
    resp = await client.patch(f"{URL}/{other['id']}", json={"name": "work"}, headers=alice.headers)
    assert (await error_of(resp, 409))["param"] == "name"
    await create(client, bob, new_key(), name="work")  # names are unique per user only


async def test_fallbacks_are_the_callers_own_without_self_or_repeats(client: TestClient, new_key: NewKey) -> None:
    alice, bob = await make_user(client), await make_user(client)
    a1, a2 = await create(client, alice, new_key()), await create(client, alice, new_key())
    b1 = await create(client, bob, new_key())
    a3 = await create(client, alice, new_key(), fallback_ids=[a2["id"], a1["id"]])
    assert a3["fallback_ids"] == [a2["id"], a1["id"]]
    for bad in ([b1["id"]], [a3["id"]], [a1["id"], a1["id"]]):
        resp = await client.patch(f"{URL}/{a3['id']}", json={"fallback_ids": bad}, headers=alice.headers)
        assert (await error_of(resp, 422))["param"] == "fallback_ids"
        assert b1["id"] not in (await resp.json())["error"]["message"]
    resp = await client.patch(f"{URL}/{a3['id']}", json={"fallback_ids": []}, headers=alice.headers)
    assert (await resp.json())["fallback_ids"] == []


async def test_other_users_ids_are_404_exactly_like_unknown_ones(client: TestClient, new_key: NewKey) -> None:
    alice, bob = await make_user(client), await make_user(client)
    await create(client, alice, new_key())
    theirs = await create(client, bob, new_key())
    unknown = str(uuid.uuid4())
    calls = [("GET", "", None), ("PUT", "", {"name": "mine"}), ("PATCH", "", {"model": "x"}),
             ("DELETE", "", None), ("PUT", "/set-default", None)]
    for method, suffix, body in calls:
        answers = []
        for config_id in (theirs["id"], unknown, theirs["id"].upper()):
            resp = await client.request(method, f"{URL}/{config_id}{suffix}", json=body, headers=alice.headers)
            answers.append((resp.status, await resp.json()))
        assert answers[0] == answers[1] == answers[2], (method, suffix, answers)
        assert answers[0][0] == 404 and answers[0][1]["error"]["type"] == "not_found_error"
    for not_an_id in ("nope", "1", "../stats", "00000000-0000-0000-0000-00000000000g", "-" * 36):
        resp = await client.get(f"{URL}/{not_an_id}", headers=alice.headers)
        assert (await error_of(resp, 404))["type"] == "not_found_error"
    resp = await client.post(f"{URL}/bulk-delete", json={"ids": [theirs["id"]]}, headers=alice.headers)
    assert await resp.json() == {"deleted": [], "not_found": [theirs["id"]]}
    listing = await (await client.get(URL, headers=alice.headers)).json()
    assert theirs["id"] not in {c["id"] for c in listing["items"]} and listing["total"] == 1
    # Bob's configuration is untouched.
    assert await (await client.get(f"{URL}/{theirs['id']}", headers=bob.headers)).json() == theirs


async def test_set_default_makes_it_the_only_one(client: TestClient, new_key: NewKey) -> None:
    user = await make_user(client)
    configs = [await create(client, user, new_key()) for _ in range(3)]
    resp = await client.put(f"{URL}/{configs[2]['id']}/set-default", headers=user.headers)
    assert resp.status == 200 and (await resp.json())["is_default"]
    assert await defaults(client, user) == [configs[2]["id"]]
    resp = await client.put(f"{URL}/{configs[2]['id']}/set-default", headers=user.headers)  # idempotent
    assert resp.status == 200 and await defaults(client, user) == [configs[2]["id"]]
    resp = await client.patch(f"{URL}/{configs[1]['id']}", json={"is_default": True}, headers=user.headers)
    assert resp.status == 200 and await defaults(client, user) == [configs[1]["id"]]
    created = await create(client, user, new_key(), is_default=True)
    assert await defaults(client, user) == [created["id"]]


async def test_delete_and_bulk_delete(client: TestClient, new_key: NewKey) -> None:
    user = await make_user(client)
    first = await create(client, user, new_key(), name="a")
    second = await create(client, user, new_key(), name="b", fallback_ids=[first["id"]])
    third = await create(client, user, new_key(), name="c")
    resp = await client.delete(f"{URL}/{first['id']}", headers=user.headers)
    assert resp.status == 204 and await resp.read() == b""
    assert (await client.get(f"{URL}/{first['id']}", headers=user.headers)).status == 404
    assert (await client.delete(f"{URL}/{first['id']}", headers=user.headers)).status == 404
    # The default moved to the next active one and the dangling fallback is gone.
    remaining = await (await client.get(URL, headers=user.headers)).json()
    assert remaining["items"][0]["id"] == second["id"] and remaining["items"][0]["is_default"]
    assert remaining["items"][0]["fallback_ids"] == []
    unknown = str(uuid.uuid4())
    resp = await client.post(f"{URL}/bulk-delete", json={"ids": [second["id"], unknown, third["id"], second["id"]]},
                             headers=user.headers)
    assert resp.status == 200
    assert await resp.json() == {"deleted": [second["id"], third["id"]], "not_found": [unknown]}
    assert (await (await client.get(URL, headers=user.headers)).json()) == {"items": [], "total": 0}
    for body in ({"ids": []}, {"ids": ["nope"]}, {"ids": [unknown], "all": True}, {}):
        assert (await client.post(f"{URL}/bulk-delete", json=body, headers=user.headers)).status == 422


async def test_list_filters_and_paging(client: TestClient, new_key: NewKey) -> None:
    user = await make_user(client)
    made = [
        await create(client, user, new_key(), name="Work GPT", model="gpt-4o"),
        await create(client, user, new_key(), name="home", provider="groq", model="llama-3.3-70b-versatile"),
        await create(client, user, new_key(), name="100%_sure", provider="groq", model="x", is_active=False),
        await create(client, user, new_key(), name="claude", provider="anthropic", model="claude-3-5-sonnet"),
    ]
    async with client.server.app[SESSIONMAKER]() as session:  # what a test (issue 5) would have stored
        await session.execute(update(LLMConfiguration).where(LLMConfiguration.id == uuid.UUID(made[3]["id"]))
                              .values(test_status="failed"))
        await session.commit()

    async def names(query: str) -> tuple[list[str], int]:
        resp = await client.get(f"{URL}?{query}", headers=user.headers)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        return [c["name"] for c in body["items"]], body["total"]

    assert await names("provider=groq") == (["100%_sure", "home"], 2)
    assert await names("q=GPT") == (["Work GPT"], 1)  # name, case-insensitively
    assert await names("q=llama") == (["home"], 1)  # model
    assert await names("q=%25") == (["100%_sure"], 1)  # a literal %, not a wildcard
    assert await names("q=_") == (["100%_sure"], 1)
    assert await names("status=failed") == (["claude"], 1)
    assert await names("status=untested&is_active=true") == (["Work GPT", "home"], 2)
    assert await names("is_active=false") == (["100%_sure"], 1)
    assert await names("limit=2") == (["Work GPT", "100%_sure"], 4)
    assert await names("limit=2&offset=2") == (["claude", "home"], 4)
    assert await names("offset=10") == ([], 4)
    for bad in ("limit=0", "limit=1001", "offset=-1", "is_active=perhaps", "limit=abc", "q=a%00b", "q="):
        resp = await client.get(f"{URL}?{bad}", headers=user.headers)
        assert (await error_of(resp, 400))["param"] == bad.split("=")[0], bad


async def test_stats(client: TestClient, new_key: NewKey) -> None:
    user, other = await make_user(client), await make_user(client)
    resp = await client.get(f"{URL}/stats", headers=user.headers)
    assert await resp.json() == {"total": 0, "active": 0, "inactive": 0, "default_id": None,
                                 "by_status": {"untested": 0, "success": 0, "failed": 0, "rate_limited": 0},
                                 "by_provider": {}}
    first = await create(client, user, new_key())
    await create(client, user, new_key(), provider="groq", is_active=False)
    await create(client, user, new_key(), provider="groq")
    await create(client, other, new_key())
    stats = await (await client.get(f"{URL}/stats", headers=user.headers)).json()
    assert stats == {"total": 3, "active": 2, "inactive": 1, "default_id": first["id"],
                     "by_status": {"untested": 3, "success": 0, "failed": 0, "rate_limited": 0},
                     "by_provider": {"groq": 2, "openai": 1}}


async def test_at_most_max_configurations_per_user(make_client: MakeClient, new_key: NewKey) -> None:
    client = await make_client(max_configurations_per_user=3)
    user, other = await make_user(client), await make_user(client)
    for _ in range(3):
        await create(client, user, new_key())
    resp = await client.post(URL, json={"name": "one-more", "provider": "openai", "model": "m", "api_key": new_key()},
                             headers=user.headers)
    assert (await error_of(resp, 409))["code"] == "too_many_configurations"
    await create(client, other, new_key())  # the limit is per user


async def test_operator_token_has_no_configurations(client: TestClient, admin_headers: dict[str, str]) -> None:
    for method, url in (("GET", URL), ("POST", URL), ("GET", f"{URL}/stats"), ("GET", "/api/audit-events")):
        resp = await client.request(method, url, json={}, headers=admin_headers)
        assert (await error_of(resp, 403))["type"] == "permission_error"
    resp = await client.get(URL)
    assert resp.status == 401


async def test_every_write_notifies_the_caches(client: TestClient, new_key: NewKey) -> None:
    seen: list[Change] = []
    client.server.app[CHANGES].subscribe(seen.append)
    user = await make_user(client)
    config = await create(client, user, new_key())
    other = await create(client, user, new_key())
    await client.patch(f"{URL}/{config['id']}", json={"model": "gpt-4o"}, headers=user.headers)
    await client.put(f"{URL}/{other['id']}/set-default", headers=user.headers)
    await client.delete(f"{URL}/{config['id']}", headers=user.headers)
    await client.post(f"{URL}/bulk-delete", json={"ids": [other["id"]]}, headers=user.headers)
    mine = [c for c in seen if c.kind == "configurations"]
    assert mine == [Change("configurations", user.id)] * 6
    # A refused write announces nothing.
    await client.patch(f"{URL}/{uuid.uuid4()}", json={"model": "x"}, headers=user.headers)
    assert len([c for c in seen if c.kind == "configurations"]) == 6


async def test_test_on_save_returns_the_verdict(client: TestClient, new_key: NewKey, aiohttp_server: Any) -> None:
    key = new_key()
    fake = await start_openai_upstream(aiohttp_server, keys=[key])
    user = await make_user(client)
    config = await create(client, user, key, provider="custom", base_url=fake.url, test_on_save=True)
    assert config["test_status"] == "success" and config["tested_at"] and config["test_latency_ms"] is not None
    assert [r.api_key for r in fake.requests_to("/v1/chat/completions")] == [key]
    # The save stands even when the test fails; the verdict says why.
    resp = await client.patch(f"{URL}/{config['id']}", json={"api_key": new_key(), "test_on_save": True},
                              headers=user.headers)
    assert resp.status == 200
    updated = await resp.json()
    assert updated["test_status"] == "failed" and "key" in updated["test_message"].lower()
    assert await stored_key(client, config["id"]) != key
    resp = await client.patch(f"{URL}/{config['id']}", json={"test_on_save": "yes please"}, headers=user.headers)
    assert (await error_of(resp, 422))["param"] == "test_on_save"
    events = await (await client.get("/api/audit-events?action=test", headers=user.headers)).json()
    assert [e["details"]["source"] for e in events["items"]] == ["test_on_save", "test_on_save"]
