"""GET/POST /api/settings in the legacy shape: a posted-back mask keeps the key (the original bug), clearing
needs an explicit flag, a real key replaces, fields the gateway does not own are ignored."""

from __future__ import annotations

import uuid

import pytest
from aiohttp.test_utils import TestClient

from gateway.configurations.crud import CLEARED_KEY, decrypt_key, default_configuration
from gateway.web.appkeys import KEYRING, SESSIONMAKER
from tests.factories import ApiUser, make_configuration, make_user

KEY = "sk-proj-original-key-0123456789"


async def _stored(client: TestClient, user: ApiUser) -> tuple[str, bool]:
    """The default configuration's plaintext key and whether it is active (read in-process, never printed)."""
    app = client.server.app
    async with app[SESSIONMAKER]() as session:
        config = await default_configuration(session, user_id=uuid.UUID(user.id))
        assert config is not None
        return decrypt_key(app[KEYRING], config), config.is_active


async def _post(client: TestClient, user: ApiUser, body: dict[str, object], status: int = 200) -> dict[str, object]:
    resp = await client.post("/api/settings", json=body, headers=user.headers)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_get_never_returns_the_key(client: TestClient) -> None:
    user = await make_user(client)
    assert await (await client.get("/api/settings", headers=user.headers)).json() == {
        "llm_model": None, "llm_base_url": None, "llm_api_key": None, "llm_api_key_set": False}
    await make_configuration(client, user, provider="anthropic", model="claude-3-5-sonnet-20241022", api_key=KEY)
    resp = await client.get("/api/settings", headers=user.headers)
    assert await resp.json() == {"llm_model": "anthropic/claude-3-5-sonnet-20241022", "llm_base_url": None,
                                 "llm_api_key": None, "llm_api_key_set": True}
    assert KEY not in await resp.text()


@pytest.mark.parametrize("posted", ["**********", "***", "<hidden>", "sk-p...6789", None, "", "  ", "absent"])
async def test_mask_null_empty_or_absent_keep_the_key(client: TestClient, posted: str | None) -> None:
    user = await make_user(client)
    await make_configuration(client, user, model="gpt-4o-mini", api_key=KEY)
    body: dict[str, object] = {"llm_model": "gpt-4o", "llm_base_url": None, "language": "en", "agent": "Codeact"}
    if posted != "absent":
        body["llm_api_key"] = posted
    view = await _post(client, user, body)
    assert view == {"llm_model": "gpt-4o", "llm_base_url": None, "llm_api_key": None, "llm_api_key_set": True}
    assert await _stored(client, user) == (KEY, True)


async def test_real_key_replaces_and_explicit_clear_clears(client: TestClient) -> None:
    user = await make_user(client)
    await make_configuration(client, user, api_key=KEY)
    await _post(client, user, {"llm_api_key": "sk-proj-replacement-key-42424242"})
    assert await _stored(client, user) == ("sk-proj-replacement-key-42424242", True)
    # the flag with a real key is contradictory
    error = await _post(client, user, {"llm_api_key": "sk-other-1234567890", "llm_api_key_clear": True}, 422)
    assert error["error"]["param"] == "llm_api_key_clear"  # type: ignore[index]
    view = await _post(client, user, {"llm_api_key": "", "llm_api_key_clear": True})
    assert view["llm_api_key_set"] is False
    assert await _stored(client, user) == (CLEARED_KEY, False)  # nothing usable, and never used for a request
    # turning it back on needs a key: without one it would send the cleared marker upstream
    config_id = (await (await client.get("/api/llm-configurations", headers=user.headers)).json())["items"][0]["id"]
    resp = await client.patch(f"/api/llm-configurations/{config_id}", json={"is_active": True}, headers=user.headers)
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "key_required"
    assert await _stored(client, user) == (CLEARED_KEY, False)
    # posting the mask back to a cleared configuration keeps it cleared; a real key brings it back
    await _post(client, user, {"llm_api_key": "**********"})
    assert await _stored(client, user) == (CLEARED_KEY, False)
    await _post(client, user, {"llm_api_key": "sk-proj-back-again-1234567890"})
    assert await _stored(client, user) == ("sk-proj-back-again-1234567890", True)


async def test_first_post_creates_the_default_configuration(client: TestClient) -> None:
    user = await make_user(client)
    error = await _post(client, user, {"llm_model": "gpt-4o", "llm_api_key": "**********"}, 422)
    assert error["error"]["param"] == "llm_api_key"  # type: ignore[index]
    view = await _post(client, user, {"llm_model": "anthropic/claude-3-5-haiku-20241022",
                                      "llm_api_key": KEY, "security_analyzer": None})
    assert view == {"llm_model": "anthropic/claude-3-5-haiku-20241022", "llm_base_url": None, "llm_api_key": None,
                    "llm_api_key_set": True}
    assert await _stored(client, user) == (KEY, True)
    # changing the model string re-derives the provider, which sends the key elsewhere: only with the key
    error = await _post(client, user, {"llm_model": "openrouter/anthropic/claude-3.5-sonnet"}, 422)
    assert error["error"]["code"] == "key_required_for_new_origin"  # type: ignore[index]
    view = await _post(client, user, {"llm_model": "openrouter/anthropic/claude-3.5-sonnet", "llm_api_key": KEY})
    assert view["llm_model"] == "openrouter/anthropic/claude-3.5-sonnet"


async def test_bad_input_names_the_field(client: TestClient) -> None:
    user = await make_user(client)
    await make_configuration(client, user, api_key=KEY)
    for body, param in (({"llm_api_key": 12345}, "llm_api_key"), ({"llm_model": ["x"]}, "llm_model"),
                        ({"llm_base_url": "http://169.254.169.254/"}, "base_url"),
                        ({"llm_api_key": " sk-padded-key-123456 "}, "api_key")):
        resp = await client.post("/api/settings", json=body, headers=user.headers)
        assert resp.status == 422, body
        assert (await resp.json())["error"]["param"] == param
        assert "sk-padded" not in await resp.text()
    resp = await client.post("/api/settings", data=b"{not json", headers=user.headers)
    assert resp.status == 400
    assert await _stored(client, user) == (KEY, True)
