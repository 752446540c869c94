"""A restart over every kind of row the product writes: `serve` (a real process) starts on a database holding
personal, team, shared, template-made, imported and legacy-migrated configurations, rows left on the old ring key
by an interrupted ring rotation (a personal row, and a team data key wrapped by it), and team configurations after
a finished and an interrupted team key rotation; then
one /v1 call through each still reaches the fake upstream with that configuration's own key. On both databases.

The rows are written through the API of in-process gateways on the test's database (a first one whose ring's
primary is the old key, then one on the suite's ring), so only one `serve` starts per backend."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from gateway.app import create_app
from gateway.settings import Settings
from gateway.store.models import LLMConfiguration, TeamKey
from gateway.teams.rotation import rotate_team_key
from gateway.web.appkeys import CHANGES, KEYRING, SESSIONMAKER
from tests.cli.live import Gateway
from tests.factories import ApiUser, make_team, make_user
from tests.fakes.openai_upstream import FakeOpenAI, start_openai_upstream
from tests.leakwatch import LeakWatch, new_watched_key
from tests.legacy_fixtures import write_legacy_files

KINDS = ("personal", "ann 1", "ann 2", "team", "team on the old ring key", "team key rotated", "green 1", "green 2",
         "template", "legacy")
# Where each kind's row is stored after the build: a ring key id, or its team's current or retired data key.
EXPECTED = {
    "personal": "t1", "personal on the old ring key": "t0", "personal rotated": "t1", "template": "t1",
    "imported": "t1", "legacy": "t1", "team": "team key current, wrapped by t1",
    "team on the old ring key": "team key current, wrapped by t0", "team key rotated": "team key current, wrapped by t1",
    "shared": "team key current, wrapped by t1", "team half rotated (new key)": "team key current, wrapped by t1",
    "team half rotated (old key)": "team key retired, wrapped by t1",
}
PASSPHRASE = "correct horse battery staple"


@dataclass(frozen=True)
class Made:
    """One configuration to call after the restart: who may call it and the key the upstream must receive."""

    id: str
    user: ApiUser
    key: str


async def _ok(resp: Any, status: int = 201) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def _personal(client: TestClient, user: ApiUser, fake: FakeOpenAI, key: str) -> str:
    body = {"name": f"p-{uuid.uuid4().hex[:6]}", "provider": "openai", "model": "gpt-4o-mini", "api_key": key,
            "base_url": fake.url}
    return str((await _ok(await client.post("/api/llm-configurations", json=body, headers=user.headers)))["id"])


async def _team_configuration(client: TestClient, owner: ApiUser, team: dict[str, Any], fake: FakeOpenAI,
                              key: str) -> str:
    body = {"name": f"t-{uuid.uuid4().hex[:6]}", "provider": "openai", "model": "gpt-4o-mini", "api_key": key,
            "base_url": fake.url}
    path = f"/api/teams/{team['id']}/llm-configurations"
    return str((await _ok(await client.post(path, json=body, headers=owner.headers)))["id"])


async def _build(old: TestClient, new: TestClient, fake: FakeOpenAI, keys: dict[str, str], tmp_path: Path,
                 admin_headers: dict[str, str]) -> dict[str, Made]:
    """Every kind of row, written as the product writes it; kind → what to call."""
    made: dict[str, Made] = {}
    # Under the old ring (its primary is t0): two personal rows and a team whose data key t0 wraps.
    ann = await make_user(old, "ann")
    for kind in ("ann 1", "ann 2"):
        made[kind] = Made(await _personal(old, ann, fake, keys[kind]), ann, keys[kind])
    red = await make_team(old, ann, "red")
    made["team"] = Made(await _team_configuration(old, ann, red, fake, keys["team"]), ann, keys["team"])

    # The suite's ring (t1 first, t0 still decrypts): everything else.
    bob = await make_user(new, "bob")
    made["personal"] = Made(await _personal(new, bob, fake, keys["personal"]), bob, keys["personal"])
    blue = await make_team(new, bob, "blue")
    made["team key rotated"] = Made(await _team_configuration(new, bob, blue, fake, keys["team key rotated"]), bob,
                                    keys["team key rotated"])
    await _ok(await new.post(f"/api/teams/{blue['id']}/rotate-key", headers=bob.headers), 200)
    shared = {"configuration_id": made["personal"].id, "name": "shared-in"}
    body = await _ok(await new.post(f"/api/teams/{blue['id']}/llm-configurations/share", json=shared,
                                    headers=bob.headers))
    made["shared"] = Made(str(body["id"]), bob, keys["personal"])

    green = await make_team(new, bob, "green")
    for kind in ("green 1", "green 2"):
        made[kind] = Made(await _team_configuration(new, bob, green, fake, keys[kind]), bob, keys[kind])

    inputs = {"server_base_url": fake.url, "server_model": "gpt-4o-mini", "server_api_key": keys["template"]}
    body = await _ok(await new.post("/api/templates/self-hosted/apply", json={"inputs": inputs},
                                    headers=bob.headers))
    made["template"] = Made(str(body["configurations"][0]["id"]), bob, keys["template"])

    # Exported by ann (keys sealed under a passphrase), imported by cid: the import re-encrypts them.
    exported = await _ok(await new.post("/api/llm-configurations/export", json={"passphrase": PASSPHRASE},
                                        headers=ann.headers), 200)
    cid = await make_user(new, "cid")
    await _ok(await new.post("/api/llm-configurations/import", json={"data": exported, "passphrase": PASSPHRASE},
                             headers=cid.headers), 200)
    listed = await _ok(await new.get("/api/llm-configurations", headers=ann.headers), 200)
    ann_1 = next(c["name"] for c in listed["items"] if c["id"] == made["ann 1"].id)
    listed = await _ok(await new.get("/api/llm-configurations", headers=cid.headers), 200)
    made["imported"] = Made(next(c["id"] for c in listed["items"] if c["name"] == ann_1), cid, keys["ann 1"])

    dee = await make_user(new, "dee")
    legacy = write_legacy_files(tmp_path / "legacy", {"dee": {"llm_model": "gpt-4o-mini",
                                                               "llm_api_key": keys["legacy"],
                                                               "llm_base_url": fake.url}})
    report = await _ok(await new.post("/api/admin/migrations/legacy-settings", json={"from_files": str(legacy)},
                                      headers=admin_headers), 200)
    assert report["migrated"] == 1, report
    listed = await _ok(await new.get("/api/llm-configurations", headers=dee.headers), 200)
    made["legacy"] = Made(str(listed["items"][0]["id"]), dee, keys["legacy"])

    # A ring rotation interrupted after one row: one of ann's rows moves to t1, the other stays on t0; every team
    # data key is re-wrapped under t1 first.
    app = new.server.app
    rotated = await _ok(await new.post("/api/admin/encryption/rotate", json={"batch_size": 1, "max_batches": 1},
                                       headers=admin_headers), 200)
    assert rotated["rotated"] == 1 and rotated["team_keys_rewrapped"] == 1, rotated
    # A team key rotation interrupted after one of green's two rows.
    half = await rotate_team_key(app[SESSIONMAKER], keyring=app[KEYRING], bus=app[CHANGES],
                                 team_id=uuid.UUID(green["id"]), batch_size=1, max_batches=1)
    assert (half.rotated, half.remaining) == (1, 1), half
    # A team made after the ring rotation by a gateway still on the old ring: its data key stays wrapped by t0.
    amber = await make_team(old, ann, "amber")
    made["team on the old ring key"] = Made(await _team_configuration(old, ann, amber, fake,
                                                                      keys["team on the old ring key"]),
                                            ann, keys["team on the old ring key"])
    # Which of the pairs moved depends on their ids: name them after where they are.
    states = await _states(new, made)
    names = {"t0": "personal on the old ring key", "t1": "personal rotated",
             "team key current, wrapped by t1": "team half rotated (new key)",
             "team key retired, wrapped by t1": "team half rotated (old key)"}
    for kind in ("ann 1", "ann 2", "green 1", "green 2"):
        made[names[states.pop(kind)]] = made.pop(kind)
    assert await _states(new, made) == EXPECTED
    return made


async def _states(client: TestClient, made: dict[str, Made]) -> dict[str, str]:
    """kind → where its row is stored: a ring key id, or its team's current or retired data key and the ring key
    that wraps that."""
    async with client.server.app[SESSIONMAKER]() as session:
        rows = {str(r.id): r for r in (await session.execute(select(LLMConfiguration))).scalars()}
        team_keys = {k.id: k for k in (await session.execute(select(TeamKey))).scalars()}

    def where(row: LLMConfiguration) -> str:
        if row.team_id is None:
            return row.key_id
        key = team_keys[row.key_id]
        return f"team key {'retired' if key.retired_at else 'current'}, wrapped by {key.key_id}"

    return {kind: where(rows[one.id]) for kind, one in made.items()}


async def test_serve_restarts_over_every_kind_of_row(aiohttp_client: Any, aiohttp_server: Any, client: TestClient,
                                                     settings: Settings, key_ring: str, tmp_path: Path,
                                                     admin_headers: dict[str, str], key_watch: LeakWatch) -> None:
    keys = {kind: new_watched_key(maker="test_restart_matrix") for kind in KINDS}
    fake = await start_openai_upstream(aiohttp_server, keys=keys.values())
    old_first = ",".join(reversed(key_ring.split(",")))
    old = await aiohttp_client(create_app(settings.model_copy(update={"encryption_keys": SecretStr(old_first)})))
    made = await _build(old, client, fake, keys, tmp_path, admin_headers)
    assert sorted(made) == sorted(EXPECTED)
    await old.close()
    await client.close()

    gateway = await asyncio.to_thread(
        Gateway, tmp_path, LLM_GATEWAY_DATABASE_URL=settings.database_url, LLM_GATEWAY_ENCRYPTION_KEYS=key_ring,
        LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS="true", LLM_GATEWAY_DATA_DIR=str(tmp_path / "serve-data"))
    try:
        served, answers = {}, {}
        async with aiohttp.ClientSession() as http:
            for kind, one in made.items():
                fake.requests.clear()
                async with http.post(f"{gateway.url}/v1/chat/completions", json={
                    "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                }, headers={"Authorization": f"Bearer {one.user.token}", "X-LLM-Configuration": one.id}) as resp:
                    answers[kind] = (await resp.text())[:300]
                    served[kind] = (resp.status, resp.headers.get("X-LLM-Configuration-Id"),
                                    [r.api_key == one.key for r in fake.requests])
        assert served == {kind: (200, one.id, [True]) for kind, one in made.items()}, answers
    finally:
        out, err = await asyncio.to_thread(gateway.stop)
        key_watch.output("the restarted gateway's output", gateway.banner + out + err)
