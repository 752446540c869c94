"""Team configurations, on SQLite and PostgreSQL: a team holds at most MAX_CONFIGURATIONS_PER_TEAM (create, share
and import alike: 409, nothing created), and a member never reads a credential in a team configuration's base
URL (query values masked; user info and fragments, refused when saved, would be masked too; owners see what
they typed); odd URLs never make a 500."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.crypto.masking import mask_url_secrets
from gateway.settings import Settings
from tests.admin.test_configurations_api import error_of
from tests.factories import add_member, make_configuration, make_team, make_team_configuration, make_user

URL_KEY = "queryvalue-secret-0123456789"


@pytest.fixture
async def bounded(aiohttp_client: Any, settings: Settings) -> TestClient:
    """The gateway with MAX_CONFIGURATIONS_PER_TEAM=2 (and the per-user limit left at its default)."""
    made: TestClient = await aiohttp_client(create_app(settings.model_copy(
        update={"max_configurations_per_team": 2})))
    return made


async def test_configurations_per_team_are_bounded(bounded: TestClient) -> None:
    client = bounded
    owner = await make_user(client)
    team = await make_team(client, owner)
    for _ in range(2):
        await make_team_configuration(client, owner, team)
    path = f"/api/teams/{team['id']}/llm-configurations"
    body = {"name": "third", "provider": "openai", "model": "m", "api_key": "sk-third-0123456789abcdef"}
    error = await error_of(await client.post(path, json=body, headers=owner.headers), 409)
    assert error["code"] == "too_many_configurations" and "MAX_CONFIGURATIONS_PER_TEAM" in error["message"]
    own = await make_configuration(client, owner)
    resp = await client.post(f"{path}/share", json={"configuration_id": own["id"]}, headers=owner.headers)
    assert (await error_of(resp, 409))["code"] == "too_many_configurations"
    listing = await (await client.get(path, headers=owner.headers)).json()
    assert len(listing["items"]) == 2 and "third" not in {c["name"] for c in listing["items"]}


def test_mask_url_secrets() -> None:
    cases = {
        "https://api.example.com/v1": "https://api.example.com/v1",
        "https://api.example.com/v1?key=abc&api-version=1": "https://api.example.com/v1?key=****&api-version=****",
        "https://user:pw@h.example/v1?tok": "https://****@h.example/v1?****",
        "https://h.example/v1#frag": "https://h.example/v1#****",
        "https://h.example/?a=b=c&&d#x": "https://h.example/?a=****&&****#****",
        "?": "?", "": "", "://@?=&#": "://****@?=****&#",
    }
    assert {url: mask_url_secrets(url) for url in cases} == cases


async def test_members_see_base_url_query_values_masked(client: TestClient) -> None:
    owner, member = await make_user(client), await make_user(client)
    team = await make_team(client, owner)
    await add_member(client, owner, team, member)
    url = f"https://gw.example.com/v1?key={URL_KEY}&region=eu"
    created = await make_team_configuration(client, owner, team, provider="custom", base_url=url)
    masked = "https://gw.example.com/v1?key=****&region=****"
    for path in (f"/api/teams/{team['id']}/llm-configurations", "/api/llm-configurations"):
        as_member = await client.get(path, headers=member.headers)
        as_owner = await client.get(path, headers=owner.headers)
        assert as_member.status == as_owner.status == 200
        assert URL_KEY not in await as_member.text()
        assert [c["base_url"] for c in (await as_member.json())["items"]] == [masked]
        assert [c["base_url"] for c in (await as_owner.json())["items"]] == [url]
    one = await client.get(f"/api/llm-configurations/{created['id']}", headers=member.headers)
    assert (await one.json())["base_url"] == masked
    # A member promoted to owner sees it whole.
    await client.patch(f"/api/teams/{team['id']}/members/{member.id}", json={"role": "owner"}, headers=owner.headers)
    one = await client.get(f"/api/llm-configurations/{created['id']}", headers=member.headers)
    assert (await one.json())["base_url"] == url


async def test_odd_base_urls_never_make_a_500_for_members(client: TestClient) -> None:
    owner, member = await make_user(client), await make_user(client)
    team = await make_team(client, owner)
    await add_member(client, owner, team, member)
    stored = []
    for url in ("https://h.example/v1?", "https://h.example/v1?&&=", "https://h.example/v1?a=%ZZ&b",
                "https://h.example:8443/v1?x=1#", "https://[::1]/v1?k=v"):
        resp = await client.post(f"/api/teams/{team['id']}/llm-configurations", headers=owner.headers, json={
            "name": f"odd-{len(stored)}", "provider": "custom", "model": "m", "base_url": url,
            "api_key": "sk-odd-url-key-0123456789abcdef"})
        if resp.status == 201:
            stored.append(url)
        else:
            assert resp.status in (400, 422), await resp.text()
    assert stored
    resp = await client.get(f"/api/teams/{team['id']}/llm-configurations", headers=member.headers)
    assert resp.status == 200
    assert len((await resp.json())["items"]) == len(stored)


async def test_simultaneous_creations_never_pass_the_team_bound(bounded: TestClient) -> None:
    """Two owners add a configuration at once to a team with room for one more: exactly one is created."""
    client = bounded
    owner, other = await make_user(client), await make_user(client)
    team = await make_team(client, owner)
    await add_member(client, owner, team, other, role="owner")
    await make_team_configuration(client, owner, team)
    path = f"/api/teams/{team['id']}/llm-configurations"
    answers = await asyncio.gather(*(client.post(path, json={
        "name": f"race-{n}", "provider": "openai", "model": "m", "api_key": f"sk-race-{n}-0123456789abcdef"},
        headers=user.headers) for n, user in enumerate((owner, other))))
    assert sorted(resp.status for resp in answers) == [201, 409]
    assert len((await (await client.get(path, headers=owner.headers)).json())["items"]) == 2
