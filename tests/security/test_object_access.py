"""Object access, driven by the OpenAPI document so no route is missed: another user's objects answer 404
exactly like unknown ones and stay untouched; a non-admin gets 403 on every operator route."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient

from tests.factories import ApiUser, invite, make_team, make_user, pending_invitations
from tests.fakes.openai_upstream import FakeOpenAI
from tests.security.conftest import MakeClient

CONFIGS = "/api/llm-configurations"
METHODS = ("get", "post", "put", "patch", "delete")


async def operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path template, operation) for every operation the API documents."""
    doc = await (await client.get("/api/openapi.json")).json()
    return [(method.upper(), path, op) for path, ops in doc["paths"].items()
            for method, op in ops.items() if method in METHODS]


async def owned_objects(client: TestClient, owner: ApiUser, fake: FakeOpenAI, key: str) -> dict[str, Any]:
    """Give `owner` one of everything: a configuration that was used and tested, a binding, usage, audit."""
    fake.keys = frozenset({key})
    resp = await client.post(CONFIGS, headers=owner.headers, json={
        "name": "mine", "provider": "custom", "model": "gpt-4o-mini", "api_key": key, "base_url": fake.url})
    assert resp.status == 201
    config = await resp.json()
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    resp = await client.put(f"/api/conversations/{conversation}/llm-configuration", headers=owner.headers,
                            json={"configuration_id": config["id"]})
    assert resp.status == 200, await resp.text()
    resp = await client.post("/v1/chat/completions", headers={**owner.headers, "X-Conversation-Id": conversation},
                             json={"model": "x", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status == 200
    assert (await client.post(f"{CONFIGS}/{config['id']}/test", headers=owner.headers)).status == 200
    # The usage writer stamps last_used_at a moment later: wait, so the snapshot taken next is the final one.
    async def stamped() -> bool:
        seen = await (await client.get(f"{CONFIGS}/{config['id']}", headers=owner.headers)).json()
        return seen["last_used_at"] is not None
    deadline = time.monotonic() + 30
    while not await stamped():
        assert time.monotonic() < deadline, "the usage writer never stamped last_used_at"
        await asyncio.sleep(0.02)
    return {"config": config, "conversation": conversation}


async def snapshot(client: TestClient, owner: ApiUser, objects: dict[str, Any]) -> list[Any]:
    """What the owner sees of its objects."""
    config_id = objects["config"]["id"]
    paths = [f"{CONFIGS}/{config_id}", f"/api/conversations/{objects['conversation']}/llm-configuration",
             f"{CONFIGS}/{config_id}/usage", "/api/audit-events", CONFIGS, "/api/invitations"]
    seen = [await (await client.get(path, headers=owner.headers)).json() for path in paths]
    for key in ("since", "until"):  # the usage window moves with the clock
        seen[2].pop(key)
    return seen


TEAM_BODIES = {
    ("PATCH", "/api/teams/{team_id}"): {"name": "taken-over"},
    ("POST", "/api/teams/{team_id}/members"): {"user": "intruder"},
    ("PATCH", "/api/teams/{team_id}/members/{user_id}"): {"role": "member"},
    ("POST", "/api/teams/{team_id}/llm-configurations"): {"name": "x", "provider": "openai", "model": "m",
                                                          "api_key": "sk-not-a-real-key-0000000000"},
    ("POST", "/api/teams/{team_id}/llm-configurations/import"): {"data": {"configurations": []}},
}


def other_body(path: str, method: str, mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any] | None:
    """A body that would be valid for the intruder's own objects, aimed at the owner's."""
    if path.startswith("/api/teams/"):
        if path.endswith("/share"):
            return {"configuration_id": mine["config"]["id"]}
        return TEAM_BODIES.get((method, path))
    if path.startswith("/api/conversations/") and method == "PUT":
        return {"configuration_id": theirs["config"]["id"]}
    if method in ("PUT", "PATCH"):
        return {"name": "taken-over", "is_active": False}
    if path.endswith("/apply"):
        return {"inputs": {}}  # templates are shared, not owned: an unknown id is simply a 404
    return None


async def test_other_users_objects_are_404_on_every_route_with_an_id(
    make_client: MakeClient, fake: FakeOpenAI, new_key: Callable[..., str]
) -> None:
    client = await make_client(allow_private_base_urls=True, usage_flush_interval_s=0.05)
    owner, intruder = await make_user(client), await make_user(client)
    theirs = await owned_objects(client, owner, fake, new_key())
    mine = await owned_objects(client, intruder, fake, new_key())
    team = await (await client.post("/api/teams", headers=owner.headers, json={"name": "owners-team"})).json()
    # The owner's pending invitation into a third user's team: only the owner may accept or decline it.
    inviter = await make_user(client)
    await invite(client, inviter, await make_team(client, inviter), owner)
    (invitation,) = await pending_invitations(client, owner)
    before = await snapshot(client, owner, theirs)
    ids = {"id": theirs["config"]["id"], "conversation_id": theirs["conversation"], "team_id": team["id"],
           "user_id": owner.id, "invitation_id": invitation["id"], "model": theirs["config"]["id"]}
    checked, wrong = [], []
    for method, template, _ in await operations(client):
        if "{" not in template or template.startswith("/api/admin/"):
            continue  # operator routes: the 403 test below
        path = template.format(**ids)
        body = other_body(template, method, mine, theirs)
        resp = await client.request(method, path, headers=intruder.headers, json=body)
        checked.append(f"{method} {template}")
        unknown = await client.request(method, template.format(id=uuid.uuid4(), conversation_id="nope",
                                                               team_id=uuid.uuid4(), user_id=uuid.uuid4(),
                                                               invitation_id=uuid.uuid4(), model=uuid.uuid4()),
                                       headers=intruder.headers, json=body)
        if resp.status != 404 or unknown.status != 404 or await resp.json() != await unknown.json():
            wrong.append((method, template, resp.status, unknown.status))
    # A conversation id is the caller's own name space: the intruder may bind its own "conv-…" (that is
    # not the owner's binding), but never to the owner's configuration.
    assert wrong == []
    assert sorted(checked) == sorted({
        f"GET {CONFIGS}/{{id}}", f"PATCH {CONFIGS}/{{id}}", f"PUT {CONFIGS}/{{id}}", f"DELETE {CONFIGS}/{{id}}",
        f"PUT {CONFIGS}/{{id}}/set-default", f"POST {CONFIGS}/{{id}}/test", f"GET {CONFIGS}/{{id}}/usage",
        "GET /api/conversations/{conversation_id}/llm-configuration",
        "PUT /api/conversations/{conversation_id}/llm-configuration",
        "DELETE /api/conversations/{conversation_id}/llm-configuration",
        "GET /api/templates/{id}", "POST /api/templates/{id}/apply",
        "GET /api/teams/{team_id}", "PATCH /api/teams/{team_id}", "DELETE /api/teams/{team_id}",
        "GET /api/teams/{team_id}/members", "POST /api/teams/{team_id}/members",
        "PATCH /api/teams/{team_id}/members/{user_id}", "DELETE /api/teams/{team_id}/members/{user_id}",
        "GET /api/teams/{team_id}/llm-configurations", "POST /api/teams/{team_id}/llm-configurations",
        "POST /api/teams/{team_id}/llm-configurations/share", "POST /api/teams/{team_id}/llm-configurations/export",
        "POST /api/teams/{team_id}/llm-configurations/import", "GET /api/teams/{team_id}/audit-events",
        "POST /api/teams/{team_id}/rotate-key", "GET /api/teams/{team_id}/usage",
        "POST /api/invitations/{invitation_id}/accept", "POST /api/invitations/{invitation_id}/decline",
        "GET /v1/models/{model}",
    }), "a new route with an id: add it here"
    # Ids in bodies and queries: bulk delete, fallbacks, audit and usage filters, exports.
    resp = await client.post(f"{CONFIGS}/bulk-delete", headers=intruder.headers, json={"ids": [ids["id"]]})
    assert (await resp.json())["deleted"] == []
    resp = await client.patch(f"{CONFIGS}/{mine['config']['id']}", headers=intruder.headers,
                              json={"fallback_ids": [ids["id"]]})
    assert resp.status in (404, 422)
    resp = await client.get("/api/audit-events", headers=intruder.headers, params={"configuration_id": ids["id"]})
    assert resp.status == 200 and (await resp.json())["items"] == []
    audit = await (await client.get("/api/audit-events", headers=intruder.headers)).json()
    assert audit["items"] and all(e["configuration_id"] != ids["id"] for e in audit["items"])
    exported = await (await client.get(f"{CONFIGS}/export", headers=intruder.headers)).text()
    assert ids["id"] not in exported and "mine" in exported  # its own, only
    usage = await (await client.get("/api/usage", headers=intruder.headers, params={"group_by": "configuration"})).text()
    assert ids["id"] not in usage
    assert await snapshot(client, owner, theirs) == before  # nothing of the owner's changed


async def test_non_admin_gets_403_on_every_operator_route(client: TestClient, admin_headers: dict[str, str]) -> None:
    user = await make_user(client)
    routes = [(m, p) for m, p, _ in await operations(client) if p.startswith("/api/admin/")]
    assert len(routes) >= 7
    for method, template in routes:
        path = template.format(id=uuid.uuid4(), team_id=uuid.uuid4(), user_id=uuid.uuid4())
        for headers, status in ((user.headers, 403), ({}, 401), ({"Authorization": "Bearer lgw_forged"}, 401)):
            resp = await client.request(method, path, headers=headers, json={})
            assert resp.status == status, (method, template, resp.status)
    users = await (await client.get("/api/admin/users", headers=admin_headers)).json()
    assert not any(u["is_admin"] for u in users["items"])  # nothing was created or promoted
