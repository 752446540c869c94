"""Team configurations through the admin API, on SQLite and PostgreSQL: created and shared by owners (keys
encrypted under the team's data key, never returned), then the ordinary /api/llm-configurations routes under the
roles — owners edit, delete and test; members read masked keys, test and make one their default; members get
403 for owners' actions; anyone else 404 for everything, another team's ids included."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.configurations.crud import decrypt_key
from gateway.crypto.keyring import CryptoError
from gateway.crypto.team_keys import decrypt_configuration_key
from gateway.store.models import AuditEvent, LLMConfiguration
from gateway.web.appkeys import KEYRING, SESSIONMAKER
from tests.admin.helpers import URL, mask, row
from tests.admin.test_configurations_api import error_of
from tests.factories import TestUser, add_member, make_configuration, make_team, make_team_configuration, make_user
from tests.fakes.openai_upstream import start_openai_upstream
from tests.leakwatch import watched


async def _team(client: TestClient) -> tuple[TestUser, TestUser, TestUser, dict[str, Any]]:
    owner, member, outsider = [await make_user(client) for _ in range(3)]
    team = await make_team(client, owner)
    await add_member(client, owner, team, member)
    return owner, member, outsider, team


async def _plaintext(client: TestClient, config_id: str) -> str:
    async with client.server.app[SESSIONMAKER]() as session:
        config = await row(client, config_id)
        return await decrypt_configuration_key(session, keyring=client.server.app[KEYRING], configuration=config)


async def test_create_returns_the_team_and_a_masked_key(client: TestClient) -> None:
    owner, member, _, team = await _team(client)
    made = await make_team_configuration(client, owner, team, name="shared")
    assert made["team"] == {"id": team["id"], "name": team["name"]}
    assert made["api_key"] == mask(made["api_key_plain"]) and not made["is_default"]
    stored = await row(client, made["id"])
    assert stored.user_id is None and str(stored.team_id) == team["id"] and stored.key_id.startswith("tk")
    assert await _plaintext(client, made["id"]) == made["api_key_plain"]
    # The ring alone cannot open it: it is under the team's data key.
    try:
        decrypt_key(client.server.app[KEYRING], stored)
        raise AssertionError("a team ciphertext decrypted as a personal one")
    except CryptoError:
        pass
    listing = await (await client.get(f"/api/teams/{team['id']}/llm-configurations", headers=member.headers)).json()
    assert [c["id"] for c in listing["items"]] == [made["id"]] and listing["items"][0]["api_key"] == made["api_key"]


async def test_member_and_outsider_cannot_create_and_names_are_unique_per_team(client: TestClient) -> None:
    owner, member, outsider, team = await _team(client)
    path = f"/api/teams/{team['id']}/llm-configurations"
    body = {"name": "n", "provider": "openai", "model": "m", "api_key": "sk-never-stored-0123456789abcdef"}
    assert (await error_of(await client.post(path, json=body, headers=member.headers), 403))["code"] == (
        "team_owner_required")
    await error_of(await client.post(path, json=body, headers=outsider.headers), 404)
    await make_team_configuration(client, owner, team, name="same")
    resp = await client.post(path, json={**body, "name": "same"}, headers=owner.headers)
    assert (await error_of(resp, 409))["code"] == "duplicate_name"
    # The same name is free for a personal configuration and in another team.
    await make_configuration(client, owner, name="same")
    await make_team_configuration(client, owner, await make_team(client, owner), name="same")


async def test_roles_on_the_configuration_routes(client: TestClient, aiohttp_server: Any) -> None:
    owner, member, outsider, team = await _team(client)
    key = f"sk-team-{uuid.uuid4().hex}"
    fake = await start_openai_upstream(aiohttp_server, keys=[key])
    made = await make_team_configuration(client, owner, team, api_key=key, base_url=fake.url)
    item = f"{URL}/{made['id']}"
    for user in (member, owner):
        got = await (await client.get(item, headers=user.headers)).json()
        assert got["api_key"] == mask(key) and got["team"]["id"] == team["id"]
        resp = await client.post(f"{item}/test", headers=user.headers)
        assert resp.status == 200 and (await resp.json())["status"] == "success", await resp.text()
    assert [r.api_key for r in fake.requests_to("/v1/chat/completions")] == [key, key]
    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None), ("PUT", {"model": "x"})):
        await error_of(await client.request(method, item, json=body, headers=outsider.headers), 404)
    await error_of(await client.post(f"{item}/test", headers=outsider.headers), 404)
    await error_of(await client.put(f"{item}/set-default", headers=outsider.headers), 404)
    for body in ({"name": "renamed"}, {"provider": "anthropic"}, {"base_url": "https://example.com/v1"},
                 {"api_key": "sk-member-tries-0123456789abcdef"}):
        resp = await client.patch(item, json=body, headers=member.headers)
        assert (await error_of(resp, 403))["code"] == "team_owner_required"
    await error_of(await client.delete(item, headers=member.headers), 403)
    assert (await _plaintext(client, made["id"])) == key
    resp = await client.patch(item, json={"name": "renamed", "model": "gpt-4o"}, headers=owner.headers)
    assert resp.status == 200 and (await resp.json())["name"] == "renamed"
    events = await (await client.get(f"/api/teams/{team['id']}/audit-events", headers=owner.headers)).json()
    assert [e["action"] for e in events["items"]][:4] == ["update", "test", "test", "create"]
    assert (await client.delete(item, headers=owner.headers)).status == 204
    assert (await client.get(item, headers=member.headers)).status == 404


async def test_owner_moving_a_key_must_re_enter_it(client: TestClient) -> None:
    owner, _, _, team = await _team(client)
    made = await make_team_configuration(client, owner, team)
    item = f"{URL}/{made['id']}"
    resp = await client.patch(item, json={"base_url": "https://other.example.com/v1"}, headers=owner.headers)
    assert (await error_of(resp, 422))["code"] == "key_required_for_new_origin"
    resp = await client.patch(item, json={"provider": "groq"}, headers=owner.headers)
    assert (await error_of(resp, 422))["code"] == "key_required_for_new_origin"
    new = f"sk-team-new-{uuid.uuid4().hex}"
    watched(new, "test_owner_moving_a_key_must_re_enter_it")
    resp = await client.patch(item, json={"base_url": "https://other.example.com/v1", "api_key": new},
                              headers=owner.headers)
    assert resp.status == 200, await resp.text()
    assert await _plaintext(client, made["id"]) == new


async def test_list_carries_the_team_and_filters(client: TestClient) -> None:
    owner, member, _, team = await _team(client)
    other_owner = await make_user(client)
    other_team = await make_team(client, other_owner)
    mine = await make_configuration(client, member, name="own")
    shared = await make_team_configuration(client, owner, team, name="shared")
    await make_team_configuration(client, other_owner, other_team)
    everything = await (await client.get(URL, headers=member.headers)).json()
    assert everything["total"] == 2
    assert {c["id"]: c["team"] for c in everything["items"]} == {
        mine["id"]: None, shared["id"]: {"id": team["id"], "name": team["name"]}}
    personal = await (await client.get(URL, params={"team": "personal"}, headers=member.headers)).json()
    assert [c["id"] for c in personal["items"]] == [mine["id"]]
    only_team = await (await client.get(URL, params={"team": team["id"]}, headers=member.headers)).json()
    assert [c["id"] for c in only_team["items"]] == [shared["id"]]
    resp = await client.get(URL, params={"team": other_team["id"]}, headers=member.headers)
    assert (await error_of(resp, 404))["param"] == "team"
    assert (await client.get(URL, params={"team": "nope"}, headers=member.headers)).status == 400


async def test_fallbacks_stay_in_the_team(client: TestClient) -> None:
    owner, _, _, team = await _team(client)
    other_team = await make_team(client, owner)
    foreign = await make_team_configuration(client, owner, other_team)
    personal = await make_configuration(client, owner)
    same = await make_team_configuration(client, owner, team)
    path = f"/api/teams/{team['id']}/llm-configurations"
    base = {"provider": "openai", "model": "m", "api_key": f"sk-team-{uuid.uuid4().hex}"}
    watched(base["api_key"], "test_fallbacks_stay_in_the_team")
    for wrong in (foreign["id"], personal["id"], str(uuid.uuid4())):
        resp = await client.post(path, json={**base, "name": "f", "fallback_ids": [wrong]}, headers=owner.headers)
        assert (await error_of(resp, 404))["param"] == "fallback_ids"
    resp = await client.post(path, json={**base, "name": "f", "fallback_ids": [same["id"]]}, headers=owner.headers)
    assert resp.status == 201 and (await resp.json())["fallback_ids"] == [same["id"]]
    resp = await client.patch(f"{URL}/{same['id']}", json={"fallback_ids": [foreign["id"]]}, headers=owner.headers)
    await error_of(resp, 404)


async def test_share_re_encrypts_under_the_team_key(client: TestClient) -> None:
    owner, _, _, team = await _team(client)
    source = await make_configuration(client, owner, name="mine")
    path = f"/api/teams/{team['id']}/llm-configurations/share"
    resp = await client.post(path, json={"configuration_id": source["id"], "name": "ours"}, headers=owner.headers)
    assert resp.status == 201, await resp.text()
    copy = await resp.json()
    assert copy["name"] == "ours" and copy["team"]["id"] == team["id"] and copy["api_key"] == mask(source["api_key"])
    source_row, copy_row = await row(client, source["id"]), await row(client, copy["id"])
    assert copy_row.api_key_encrypted != source_row.api_key_encrypted and copy_row.key_id.startswith("tk")
    assert await _plaintext(client, copy["id"]) == source["api_key"]
    # The copied ciphertext opens under the team key only: put into the personal row, it does not decrypt.
    source_row.api_key_encrypted, source_row.key_id = copy_row.api_key_encrypted, copy_row.key_id
    try:
        decrypt_key(client.server.app[KEYRING], source_row)
        raise AssertionError("a team ciphertext decrypted in a personal row")
    except CryptoError:
        pass
    resp = await client.post(path, json={"configuration_id": source["id"]}, headers=owner.headers)
    assert (await resp.json())["name"] == "mine"
    assert (await error_of(await client.post(path, json={"configuration_id": source["id"]},
                                             headers=owner.headers), 409))["code"] == "duplicate_name"


async def test_share_refuses_what_is_not_yours(client: TestClient) -> None:
    owner, member, outsider, team = await _team(client)
    path = f"/api/teams/{team['id']}/llm-configurations/share"
    others = await make_configuration(client, outsider)
    members_own = await make_configuration(client, member)
    team_config = await make_team_configuration(client, owner, team)
    for source in (others["id"], team_config["id"], str(uuid.uuid4())):
        resp = await client.post(path, json={"configuration_id": source}, headers=owner.headers)
        assert (await error_of(resp, 404))["param"] == "configuration_id"
    resp = await client.post(path, json={"configuration_id": members_own["id"]}, headers=member.headers)
    await error_of(resp, 403)
    foreign_team = await make_team(client, outsider)
    resp = await client.post(f"/api/teams/{foreign_team['id']}/llm-configurations/share",
                             json={"configuration_id": others["id"]}, headers=owner.headers)
    await error_of(resp, 404)
    async with client.server.app[SESSIONMAKER]() as session:
        count = len((await session.execute(select(LLMConfiguration.id).where(
            LLMConfiguration.team_id.is_not(None)))).all())
        assert count == 1
        actions = (await session.execute(select(AuditEvent.action))).scalars().all()
        assert "share" not in actions
