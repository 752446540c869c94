"""Team configurations through the proxy (DESIGN §8): members select them by `<team>/<name>` or id, an
unqualified name is the caller's own only, /v1/models lists them, a member's default and bindings may be one;
non-members and other teams reach nothing; a removed member or a deleted team stops resolving at once."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.factories import TestUser, add_member, make_team, make_team_configuration, make_user
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI, start_openai_upstream

from .conftest import MESSAGES, openai_config

TEAM_KEY = "sk-team-proxy-key-0000000000000001"


@pytest.fixture
async def team_fake(aiohttp_server: Any) -> FakeOpenAI:
    """An upstream that accepts the team's key only."""
    return await start_openai_upstream(aiohttp_server, keys=(TEAM_KEY,), content="from the team")


@pytest.fixture
async def owner(client: TestClient) -> TestUser:
    return await make_user(client, "owner-" + uuid.uuid4().hex[:6])


@pytest.fixture
async def member(client: TestClient) -> TestUser:
    return await make_user(client, "member-" + uuid.uuid4().hex[:6])


@pytest.fixture
async def team(client: TestClient, owner: TestUser, member: TestUser) -> dict[str, Any]:
    made = await make_team(client, owner, "acme")
    await add_member(client, owner, made, member)
    return made


async def team_config(client: TestClient, owner: TestUser, team: dict[str, Any], fake: FakeOpenAI,
                      **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"name": "shared", "provider": "custom", "model": "m-team", "base_url": fake.url,
                              "api_key": TEAM_KEY}
    values.update(fields)
    return await make_team_configuration(client, owner, team, **values)


async def chat(client: TestClient, user: TestUser, *, model: str = "x", **headers: str) -> tuple[int, dict[str, Any],
                                                                                                   dict[str, str]]:
    """(status, body, headers) of one chat completion as `user`."""
    resp = await client.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES},
                             headers={**user.headers, **headers})
    return resp.status, await resp.json(), dict(resp.headers)


async def served_by(client: TestClient, user: TestUser, *, model: str = "x", **headers: str) -> str:
    status, body, answer_headers = await chat(client, user, model=model, **headers)
    assert status == 200, body
    return answer_headers["X-LLM-Configuration-Id"]


async def test_member_selects_team_configuration_by_qualified_name_and_id(
        client: TestClient, owner: TestUser, member: TestUser, team: dict[str, Any], fake: FakeOpenAI,
        team_fake: FakeOpenAI) -> None:
    shared = await team_config(client, owner, team, team_fake)
    mine = await openai_config(client, member, fake, name="mine")
    assert await served_by(client, member) == mine["id"]  # the member's own default
    for headers, model in (({"X-LLM-Configuration": "acme/shared"}, "x"),
                           ({"X-LLM-Configuration": shared["id"]}, "x"),
                           ({"X-LLM-Configuration": shared["id"].upper()}, "x"),
                           ({}, "acme/shared")):
        assert await served_by(client, member, model=model, **headers) == shared["id"]
        assert team_fake.last_request.api_key == TEAM_KEY  # decrypted under the team's data key
        assert team_fake.last_request.body["model"] == "m-team"
    assert len(team_fake.requests) == 4
    # The owner is a member too.
    assert await served_by(client, owner, model="acme/shared") == shared["id"]
    models = await (await client.get("/v1/models", headers=member.headers)).json()
    assert [m["id"] for m in models["data"]] == ["acme/shared", "mine"]


async def test_unqualified_name_matches_only_own_configurations(
        client: TestClient, owner: TestUser, member: TestUser, team: dict[str, Any], fake: FakeOpenAI,
        team_fake: FakeOpenAI) -> None:
    shared = await team_config(client, owner, team, team_fake, name="gpt")
    await team_config(client, owner, team, team_fake, name="only-team")
    own = await openai_config(client, member, fake, name="gpt")
    assert await served_by(client, member, model="gpt") == own["id"]
    assert await served_by(client, member, **{"X-LLM-Configuration": "gpt"}) == own["id"]
    assert await served_by(client, member, **{"X-LLM-Configuration": "acme/gpt"}) == shared["id"]
    # A team's name alone is no name of the member's: 404 in the header, a plain model name in the body.
    status, body, _ = await chat(client, member, **{"X-LLM-Configuration": "only-team"})
    assert status == 404 and body["error"]["code"] == "configuration_not_found"
    assert await served_by(client, member, model="only-team") == own["id"]  # the default
    assert fake.last_request.body["model"] == "gpt-4o-mini"


async def test_non_members_and_other_teams_reach_nothing(
        client: TestClient, owner: TestUser, member: TestUser, team: dict[str, Any], fake: FakeOpenAI,
        team_fake: FakeOpenAI) -> None:
    shared = await team_config(client, owner, team, team_fake)
    stranger = await make_user(client)
    await openai_config(client, stranger, fake, name="theirs")
    # Another team the member is not in, with a configuration of the same name.
    other_owner = await make_user(client)
    other_team = await make_team(client, other_owner, "other")
    other = await team_config(client, other_owner, other_team, team_fake)
    attempts = (
        (stranger, {"X-LLM-Configuration": shared["id"]}),
        (stranger, {"X-LLM-Configuration": "acme/shared"}),
        (member, {"X-LLM-Configuration": other["id"]}),
        (member, {"X-LLM-Configuration": "other/shared"}),
    )
    for user, headers in attempts:
        status, body, _ = await chat(client, user, **headers)
        assert status == 404, body
        assert body["error"]["code"] == "configuration_not_found"
    # As a model name, a team configuration a caller may not use is just a model name: their default serves.
    assert await served_by(client, stranger, model="acme/shared") != shared["id"]
    assert fake.last_request.api_key == DEFAULT_OPENAI_KEY
    # Nor by a conversation binding.
    for user, configuration in ((stranger, shared), (member, other)):
        resp = await client.put("/api/conversations/c1/llm-configuration", headers=user.headers,
                                json={"configuration_id": configuration["id"]})
        assert resp.status == 404, await resp.text()
    models = await (await client.get("/v1/models", headers=stranger.headers)).json()
    assert [m["id"] for m in models["data"]] == ["theirs"]
    assert team_fake.requests == []


async def test_binding_to_a_team_configuration(client: TestClient, owner: TestUser, member: TestUser,
                                               team: dict[str, Any], fake: FakeOpenAI, team_fake: FakeOpenAI) -> None:
    shared = await team_config(client, owner, team, team_fake)
    await openai_config(client, member, fake, name="mine")
    resp = await client.put("/api/conversations/c1/llm-configuration", headers=member.headers,
                            json={"configuration_id": shared["id"]})
    assert resp.status == 200, await resp.text()
    assert await served_by(client, member, **{"X-Conversation-Id": "c1"}) == shared["id"]
    assert team_fake.last_request.api_key == TEAM_KEY


async def test_a_removed_member_loses_id_name_binding_and_default_at_once(
        client: TestClient, owner: TestUser, member: TestUser, team: dict[str, Any], team_fake: FakeOpenAI) -> None:
    shared = await team_config(client, owner, team, team_fake)
    resp = await client.put("/api/conversations/c1/llm-configuration", headers=member.headers,
                            json={"configuration_id": shared["id"]})
    assert resp.status == 200, await resp.text()
    await make_member_default(client, member, shared)
    assert await served_by(client, member) == shared["id"]  # the default
    assert await served_by(client, member, **{"X-Conversation-Id": "c1"}) == shared["id"]
    assert await served_by(client, member, **{"X-LLM-Configuration": shared["id"]}) == shared["id"]
    served = len(team_fake.requests)

    resp = await client.delete(f"/api/teams/{team['id']}/members/{member.id}", headers=owner.headers)
    assert resp.status == 204, await resp.text()
    for headers in ({"X-LLM-Configuration": shared["id"]}, {"X-LLM-Configuration": "acme/shared"}):
        status, body, _ = await chat(client, member, **headers)
        assert status == 404 and body["error"]["code"] == "configuration_not_found"
    # Neither the binding nor the default resolves: nothing is selected.
    for headers in ({"X-Conversation-Id": "c1"}, {}):
        status, body, _ = await chat(client, member, model="acme/shared", **headers)
        assert status == 400 and body["error"]["code"] == "no_configuration_selected"
    models = await (await client.get("/v1/models", headers=member.headers)).json()
    assert models["data"] == []
    assert len(team_fake.requests) == served
    assert await served_by(client, owner, model="acme/shared") == shared["id"]  # the team goes on


async def make_member_default(client: TestClient, member: TestUser, configuration: dict[str, Any]) -> None:
    """A member makes a team configuration their own default."""
    resp = await client.patch(f"/api/llm-configurations/{configuration['id']}", json={"is_default": True},
                              headers=member.headers)
    assert resp.status == 200, await resp.text()


async def test_member_default_may_be_a_team_configuration(
        client: TestClient, owner: TestUser, member: TestUser, team: dict[str, Any], fake: FakeOpenAI,
        team_fake: FakeOpenAI) -> None:
    shared = await team_config(client, owner, team, team_fake)
    mine = await openai_config(client, member, fake, name="mine")
    assert await served_by(client, member) == mine["id"]
    await make_member_default(client, member, shared)
    assert await served_by(client, member) == shared["id"]
    await make_member_default(client, member, mine)
    assert await served_by(client, member) == mine["id"]


async def test_deleted_team_stops_serving_at_once(client: TestClient, owner: TestUser, member: TestUser,
                                                  team: dict[str, Any], team_fake: FakeOpenAI) -> None:
    shared = await team_config(client, owner, team, team_fake)
    assert await served_by(client, member, model="acme/shared") == shared["id"]
    resp = await client.delete(f"/api/teams/{team['id']}", headers=owner.headers)
    assert resp.status == 204, await resp.text()
    for user in (owner, member):
        status, body, _ = await chat(client, user, **{"X-LLM-Configuration": shared["id"]})
        assert status == 404, body
    assert len(team_fake.requests) == 1


async def test_team_key_rotation_keeps_serving(client: TestClient, owner: TestUser, member: TestUser,
                                               team: dict[str, Any], team_fake: FakeOpenAI) -> None:
    shared = await team_config(client, owner, team, team_fake)
    assert await served_by(client, member, model="acme/shared") == shared["id"]
    resp = await client.post(f"/api/teams/{team['id']}/rotate-key", headers=owner.headers)
    assert resp.status == 200, await resp.text()
    assert await served_by(client, member, model="acme/shared") == shared["id"]
    assert team_fake.last_request.api_key == TEAM_KEY
    assert len(team_fake.requests) == 2


async def test_owner_changes_reach_members_at_once(client: TestClient, owner: TestUser, member: TestUser,
                                                   team: dict[str, Any], team_fake: FakeOpenAI) -> None:
    shared = await team_config(client, owner, team, team_fake)
    assert await served_by(client, member, model="acme/shared") == shared["id"]  # cached now
    resp = await client.patch(f"/api/teams/{team['id']}", json={"name": "renamed"}, headers=owner.headers)
    assert resp.status == 200, await resp.text()
    assert await served_by(client, member, **{"X-LLM-Configuration": "renamed/shared"}) == shared["id"]
    status, body, _ = await chat(client, member, **{"X-LLM-Configuration": "acme/shared"})
    assert status == 404, body
    resp = await client.patch(f"/api/llm-configurations/{shared['id']}", json={"is_active": False},
                              headers=owner.headers)
    assert resp.status == 200, await resp.text()
    status, body, _ = await chat(client, member, **{"X-LLM-Configuration": "renamed/shared"})
    assert status == 400 and body["error"]["code"] == "configuration_inactive"
    # A member may not change it (403), and nothing changes.
    resp = await client.patch(f"/api/llm-configurations/{shared['id']}", json={"is_active": True},
                              headers=member.headers)
    assert resp.status == 403
    status, _, _ = await chat(client, member, **{"X-LLM-Configuration": shared["id"]})
    assert status == 400
