"""`client.models.retrieve(id)` of the openai SDK (GET /v1/models/{id}): the model object of a configuration the
caller may use, by its name or `<team>/<name>`; anything else, another user's configuration included, is the same
404 `model_not_found` in OpenAI's envelope."""

from __future__ import annotations

import openai
import pytest
from aiohttp.test_utils import TestClient

from tests.factories import add_member, make_configuration, make_team, make_team_configuration, make_user

from .conftest import CONFIGURATION, Gateway


def sdk(gateway: Gateway, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url, api_key=token, max_retries=0)


async def test_retrieve_answers_for_own_and_team_configurations(gateway: Gateway) -> None:
    client: TestClient = gateway.client
    owner = await make_user(client, "retrieve-owner")
    member = await make_user(client, "retrieve-member")
    team = await make_team(client, owner, "lab")
    await add_member(client, owner, team, member)
    await make_team_configuration(client, owner, team, name="shared", provider="anthropic",
                                  model="claude-sonnet-4-5", api_key="sk-ant-retrieve-0123456789abcdef")
    await make_configuration(client, member, name="mine", provider="openai", model="gpt-4o-mini",
                             api_key="sk-retrieve-member-0123456789abcdef")
    async with sdk(gateway, member.token) as api:
        listed = [m async for m in api.models.list()]
        for model in listed:  # every id /v1/models gives retrieves to the same object
            assert (await api.models.retrieve(model.id)).model_dump() == model.model_dump()
        shared = await api.models.retrieve("lab/shared")
    assert {m.id for m in listed} == {"mine", "lab/shared"}
    assert (shared.id, shared.object, shared.owned_by) == ("lab/shared", "model", "anthropic")
    assert shared.created > 0
    async with sdk(gateway, gateway.token) as api:
        own = await api.models.retrieve(CONFIGURATION)
    assert (own.id, own.owned_by) == (CONFIGURATION, "custom")


async def test_unknown_inactive_and_others_configurations_are_one_404(gateway: Gateway) -> None:
    client: TestClient = gateway.client
    stranger = await make_user(client, "retrieve-stranger")
    await make_configuration(client, stranger, name="theirs", provider="openai", model="gpt-4o-mini",
                             api_key="sk-retrieve-stranger-0123456789abcdef")
    await make_configuration(client, stranger, name="asleep", provider="openai", model="gpt-4o-mini",
                             api_key="sk-retrieve-stranger-0123456789abcdeg", is_active=False)
    answers = []
    async with sdk(gateway, gateway.token) as api:
        for name in ("theirs", "nobody", "lab/nothing"):
            with pytest.raises(openai.NotFoundError) as raised:
                await api.models.retrieve(name)
            answers.append(raised.value.body)
    async with sdk(gateway, stranger.token) as api:
        with pytest.raises(openai.NotFoundError) as raised:
            await api.models.retrieve("asleep")  # inactive: not among /v1/models either
        answers.append(raised.value.body)
        assert (await api.models.retrieve("theirs")).id == "theirs"
    for body in answers:
        assert body == {"message": "The model does not exist or you do not have access to it",
                        "type": "not_found_error", "code": "model_not_found", "param": "model"}
    resp = await client.get("/v1/models/theirs")  # no token at all
    assert resp.status == 401 and (await resp.json())["error"]["type"] == "authentication_error"
