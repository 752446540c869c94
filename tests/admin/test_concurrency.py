"""Real concurrency through the HTTP API (separate database connections; on PostgreSQL truly in parallel):
one default whatever the race, no 500, and no update ever loses a key."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from aiohttp.test_utils import TestClient

from tests.admin.helpers import URL, create, defaults, stored_key
from tests.factories import make_user


async def test_simultaneous_set_default_leaves_exactly_one(client: TestClient, new_key: Callable[..., str]) -> None:
    user = await make_user(client)
    configs = [await create(client, user, new_key()) for _ in range(6)]
    for _ in range(3):
        order = [random.choice(configs)["id"] for _ in range(24)]
        responses = await asyncio.gather(
            *(client.put(f"{URL}/{config_id}/set-default", headers=user.headers) for config_id in order)
        )
        assert [r.status for r in responses] == [200] * len(order), [await r.text() for r in responses]
        (winner,) = await defaults(client, user)
        assert winner in order
        listing = await (await client.get(URL, headers=user.headers)).json()
        assert [c["id"] for c in listing["items"] if c["is_default"]] == [winner]


async def test_racing_defaults_from_every_write_path(client: TestClient, new_key: Callable[..., str]) -> None:
    user = await make_user(client)
    configs = [await create(client, user, new_key()) for _ in range(4)]
    body = {"name": "", "provider": "openai", "model": "m", "is_default": True}
    calls = []
    for index in range(8):
        calls.append(client.patch(f"{URL}/{configs[index % 4]['id']}", json={"is_default": True}, headers=user.headers))
        calls.append(client.put(f"{URL}/{configs[(index + 1) % 4]['id']}/set-default", headers=user.headers))
        calls.append(client.post(URL, json={**body, "name": f"new-{index}", "api_key": new_key()}, headers=user.headers))
    responses = await asyncio.gather(*calls)
    assert all(r.status < 500 for r in responses) and {r.status for r in responses} <= {200, 201}
    assert len(await defaults(client, user)) == 1


async def test_concurrent_updates_never_lose_the_key(client: TestClient, new_key: Callable[..., str]) -> None:
    user = await make_user(client)
    key = new_key()
    config = await create(client, user, key)
    masked = config["api_key"]
    bodies = []
    for index in range(30):
        bodies.append([{"name": f"name-{index}", "api_key": masked}, {"model": f"model-{index}"},
                       {"is_active": index % 2 == 0, "api_key": None}, {"api_key": masked, "base_url": None}][index % 4])
    responses = await asyncio.gather(
        *(client.request(random.choice(["PUT", "PATCH"]), f"{URL}/{config['id']}", json=body, headers=user.headers)
          for body in bodies)
    )
    assert [r.status for r in responses] == [200] * len(bodies)
    assert await stored_key(client, config["id"]) == key


async def test_concurrent_key_changes_keep_one_real_key(client: TestClient, new_key: Callable[..., str]) -> None:
    user = await make_user(client)
    original = new_key()
    config = await create(client, user, original)
    replacements = [new_key() for _ in range(6)]
    bodies = [{"api_key": k} for k in replacements] + [{"name": f"n{i}", "api_key": config["api_key"]} for i in range(6)]
    random.shuffle(bodies)
    responses = await asyncio.gather(
        *(client.patch(f"{URL}/{config['id']}", json=body, headers=user.headers) for body in bodies)
    )
    # A stale mask posted after the key changed is refused (422), never stored; nothing is a 500.
    assert {r.status for r in responses} <= {200, 422}
    assert all(r.status == 200 for r, b in zip(responses, bodies, strict=True) if b["api_key"] in replacements)
    assert await stored_key(client, config["id"]) in replacements


async def test_racing_deletes_and_default_switches(client: TestClient, new_key: Callable[..., str]) -> None:
    user = await make_user(client)
    configs = [await create(client, user, new_key()) for _ in range(10)]
    doomed, kept = configs[:5], configs[5:]
    calls = [client.delete(f"{URL}/{c['id']}", headers=user.headers) for c in doomed[:3]]
    calls.append(client.post(f"{URL}/bulk-delete", json={"ids": [c["id"] for c in doomed[2:]]}, headers=user.headers))
    calls += [client.put(f"{URL}/{c['id']}/set-default", headers=user.headers) for c in kept + doomed]
    responses = await asyncio.gather(*calls)
    assert {r.status for r in responses} <= {200, 204, 404}, [await r.text() for r in responses]
    listing = await (await client.get(URL, headers=user.headers)).json()
    assert {c["id"] for c in listing["items"]} == {c["id"] for c in kept}
    assert len(await defaults(client, user)) == 1
