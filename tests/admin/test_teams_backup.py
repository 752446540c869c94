"""Export and import of a team's configurations (owners), on SQLite and PostgreSQL: keys only sealed under a
passphrase, restored under the receiving team's data key, fallbacks linked by name within the team, members 403
and everyone else 404."""

from __future__ import annotations

import uuid

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.crypto.team_keys import decrypt_configuration_key
from gateway.store.models import LLMConfiguration
from gateway.web.appkeys import KEYRING, SESSIONMAKER
from tests.admin.test_configurations_api import error_of
from tests.factories import add_member, make_team, make_team_configuration, make_user

PASSPHRASE = "correct horse battery staple"


async def _team_keys(client: TestClient, team_id: str) -> dict[str, tuple[str, str, list[str]]]:
    """name → (plaintext key, key id, fallback names) of a team's configurations, as stored."""
    async with client.server.app[SESSIONMAKER]() as session:
        rows = list((await session.execute(select(LLMConfiguration).where(
            LLMConfiguration.team_id == uuid.UUID(team_id)))).scalars())
        names = {str(r.id): r.name for r in rows}
        return {r.name: (await decrypt_configuration_key(session, keyring=client.server.app[KEYRING],
                                                         configuration=r), r.key_id,
                         [names[f] for f in r.fallback_ids]) for r in rows}


async def test_export_and_import_between_teams(client: TestClient) -> None:
    owner, member, outsider = [await make_user(client) for _ in range(3)]
    team, target = await make_team(client, owner), await make_team(client, owner)
    await add_member(client, owner, team, member)
    first = await make_team_configuration(client, owner, team, name="first")
    await make_team_configuration(client, owner, team, name="second", fallback_ids=[first["id"]])
    export = f"/api/teams/{team['id']}/llm-configurations/export"
    await error_of(await client.post(export, json={"passphrase": PASSPHRASE}, headers=member.headers), 403)
    await error_of(await client.post(export, json={"passphrase": PASSPHRASE}, headers=outsider.headers), 404)
    resp = await client.post(export, headers=owner.headers)
    without_keys = await resp.json()
    assert resp.status == 200 and all(e["api_key_sealed"] is None for e in without_keys["configurations"])
    resp = await client.post(export, json={"passphrase": PASSPHRASE}, headers=owner.headers)
    document = await resp.json()
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    assert [e["name"] for e in document["configurations"]] == ["first", "second"]
    assert document["configurations"][1]["fallbacks"] == ["first"]
    assert all(e["api_key_sealed"] for e in document["configurations"])

    imports = f"/api/teams/{target['id']}/llm-configurations/import"
    resp = await client.post(imports, json={"data": document, "passphrase": "wrong passphrase"},
                             headers=owner.headers)
    assert (await error_of(resp, 422))["code"] == "wrong_passphrase"
    await error_of(await client.post(imports, json={"data": document, "passphrase": PASSPHRASE},
                                     headers=member.headers), 404)
    resp = await client.post(imports, json={"data": document, "passphrase": PASSPHRASE}, headers=owner.headers)
    report = await resp.json()
    assert resp.status == 200 and report["created"] == ["first", "second"] and report["keys_restored"]
    source, restored = await _team_keys(client, team["id"]), await _team_keys(client, target["id"])
    assert {n: v[0] for n, v in restored.items()} == {n: v[0] for n, v in source.items()}
    assert restored["second"][2] == ["first"]
    # Re-encrypted under the receiving team's own data key.
    assert {v[1] for v in restored.values()}.isdisjoint({v[1] for v in source.values()})
    again = await (await client.post(imports, json={"data": document, "passphrase": PASSPHRASE},
                                     headers=owner.headers)).json()
    assert again["unchanged"] == ["first", "second"] and not again["created"]


async def test_import_without_keys_creates_inactive_configurations(client: TestClient) -> None:
    owner = await make_user(client)
    team, target = await make_team(client, owner), await make_team(client, owner)
    made = await make_team_configuration(client, owner, team, name="keyless")
    document = await (await client.post(f"/api/teams/{team['id']}/llm-configurations/export",
                                        headers=owner.headers)).json()
    resp = await client.post(f"/api/teams/{target['id']}/llm-configurations/import", json={"data": document},
                             headers=owner.headers)
    report = await resp.json()
    assert resp.status == 200 and report["needs_key"] == ["keyless"] and not report["keys_restored"]
    listing = await (await client.get(f"/api/teams/{target['id']}/llm-configurations",
                                      headers=owner.headers)).json()
    (item,) = listing["items"]
    assert item["is_active"] is False and item["api_key"] == "****"
    resp = await client.patch(f"/api/llm-configurations/{item['id']}", json={"is_active": True},
                              headers=owner.headers)
    assert (await error_of(resp, 422))["code"] == "key_required"
    resp = await client.patch(f"/api/llm-configurations/{item['id']}",
                              json={"is_active": True, "api_key": made["api_key_plain"]}, headers=owner.headers)
    assert resp.status == 200 and (await resp.json())["is_active"] is True
