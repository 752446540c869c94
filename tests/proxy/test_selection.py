"""Which configuration serves a request: header, model name, conversation binding, default — first wins."""

from __future__ import annotations

import uuid

import openai
import pytest
from aiohttp.test_utils import TestClient

from tests.factories import ApiUser, make_user
from tests.fakes.openai_upstream import FakeOpenAI

from .conftest import MESSAGES, openai_config, sdk


async def served_by(client: TestClient, user: ApiUser, *, model: str = "whatever", **headers: str) -> str:
    async with sdk(client, user, **headers) as api:
        raw = await api.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    return raw.headers["X-LLM-Configuration-Id"]


async def test_each_selection_path(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    default = await openai_config(client, user, fake, name="default-one", model="m-default")
    by_name = await openai_config(client, user, fake, name="by-name", model="m-name")
    bound = await openai_config(client, user, fake, name="bound", model="m-bound")
    explicit = await openai_config(client, user, fake, name="explicit", model="m-explicit")
    assert default["is_default"]
    resp = await client.put("/api/conversations/conv-1/llm-configuration", headers=user.headers,
                            json={"configuration_id": bound["id"]})
    assert resp.status == 200, await resp.text()

    # 4. the default
    assert await served_by(client, user) == default["id"]
    assert fake.last_request.body["model"] == "m-default"
    # 3. the conversation's binding beats the default
    assert await served_by(client, user, **{"X-Conversation-Id": "conv-1"}) == bound["id"]
    assert fake.last_request.body["model"] == "m-bound"
    # 2. the model naming a configuration beats the binding
    assert await served_by(client, user, model="by-name", **{"X-Conversation-Id": "conv-1"}) == by_name["id"]
    # 1. the header (by id, then by name) beats everything
    for value in (explicit["id"], "explicit"):
        got = await served_by(client, user, model="by-name", **{"X-Conversation-Id": "conv-1",
                                                                "X-LLM-Configuration": value})
        assert got == explicit["id"]
        assert fake.last_request.body["model"] == "m-explicit"


async def test_binding_endpoints(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    config = await openai_config(client, user, fake)
    other = await openai_config(client, user, fake)
    path = "/api/conversations/c%2F42/llm-configuration"
    assert (await client.get(path, headers=user.headers)).status == 404
    resp = await client.put(path, headers=user.headers, json={"configuration_id": config["id"]})
    assert resp.status == 200
    assert (await resp.json())["configuration_id"] == config["id"]
    assert await served_by(client, user, **{"X-Conversation-Id": "c/42"}) == config["id"]
    # Rebinding takes effect at once: the cache was told.
    await client.put(path, headers=user.headers, json={"configuration_id": other["id"]})
    body = await (await client.get(path, headers=user.headers)).json()
    assert body["conversation_id"] == "c/42" and body["configuration_id"] == other["id"]
    assert await served_by(client, user, **{"X-Conversation-Id": "c/42"}) == other["id"]
    assert (await client.delete(path, headers=user.headers)).status == 204
    assert (await client.delete(path, headers=user.headers)).status == 404
    assert await served_by(client, user, **{"X-Conversation-Id": "c/42"}) == config["id"]  # the default again
    bad = await client.put(path, headers=user.headers, json={"configuration_id": config["id"], "user_id": "x"})
    assert bad.status == 422


async def test_binding_to_another_users_configuration_is_404(client: TestClient, user: ApiUser,
                                                             fake: FakeOpenAI) -> None:
    stranger = await make_user(client)
    theirs = await openai_config(client, stranger, fake)
    resp = await client.put("/api/conversations/c1/llm-configuration", headers=user.headers,
                            json={"configuration_id": theirs["id"]})
    assert resp.status == 404
    resp = await client.put("/api/conversations/c1/llm-configuration", headers=user.headers,
                            json={"configuration_id": str(uuid.uuid4())})
    assert resp.status == 404


async def test_nothing_selected_says_what_to_set(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    # A user's first configuration becomes the default; unset it so nothing can be selected.
    config = await openai_config(client, user, fake, name="not-default")
    resp = await client.patch(f"/api/llm-configurations/{config['id']}", json={"is_default": False},
                              headers=user.headers)
    assert resp.status == 200 and not (await resp.json())["is_default"]
    async with sdk(client, user) as api:
        with pytest.raises(openai.BadRequestError) as caught:
            await api.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    message = caught.value.body["message"]  # type: ignore[index]
    for hint in ("X-LLM-Configuration", "model", "X-Conversation-Id", "default"):
        assert hint in message
    assert fake.requests == []


async def test_other_users_and_unknown_configurations_are_404(client: TestClient, user: ApiUser,
                                                              fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    stranger = await make_user(client)
    theirs = await openai_config(client, stranger, fake, name="theirs")
    for value in (theirs["id"], "theirs", str(uuid.uuid4()), "no-such-name"):
        async with sdk(client, user, **{"X-LLM-Configuration": value}) as api:
            with pytest.raises(openai.NotFoundError):
                await api.chat.completions.create(model="x", messages=MESSAGES)
    # Their configuration's name as the model is just a model name for this user: the default serves.
    async with sdk(client, user) as api:
        raw = await api.chat.completions.with_raw_response.create(model="theirs", messages=MESSAGES)
    assert raw.headers["X-LLM-Configuration-Id"] != theirs["id"]


async def test_inactive_configurations_are_never_used(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    default = await openai_config(client, user, fake, name="main")
    off = await openai_config(client, user, fake, name="off", is_active=False)
    for headers, model in (({"X-LLM-Configuration": off["id"]}, "x"), ({}, "off")):
        async with sdk(client, user, **headers) as api:
            with pytest.raises(openai.BadRequestError) as caught:
                await api.chat.completions.create(model=model, messages=MESSAGES)
        assert "inactive" in caught.value.message
    resp = await client.put("/api/conversations/c1/llm-configuration", headers=user.headers,
                            json={"configuration_id": off["id"]})
    assert resp.status == 200
    assert await served_by(client, user, **{"X-Conversation-Id": "c1"}) == default["id"]
    assert len(fake.requests) == 1


async def test_operator_token_has_no_configurations(client: TestClient, admin_headers: dict[str, str]) -> None:
    resp = await client.post("/v1/chat/completions", headers=admin_headers, json={"model": "x", "messages": []})
    assert resp.status == 403
