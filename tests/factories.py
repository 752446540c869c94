"""Factories for users, tokens and configurations, going through the same code paths as real callers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import ADMIN_TOKEN
from tests.leakwatch import watched


@dataclass(frozen=True)
class ApiUser:
    """A user made through the operator API, with its token."""

    id: str
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """Authorization headers for this user."""
        return {"Authorization": f"Bearer {self.token}"}


async def make_user(client: TestClient, name: str | None = None, *, is_admin: bool = False) -> ApiUser:
    """Create a user via POST /api/admin/users."""
    name = name or f"user-{uuid.uuid4().hex[:8]}"
    resp = await client.post(
        "/api/admin/users", json={"name": name, "is_admin": is_admin},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return ApiUser(id=body["id"], name=body["name"], token=body["token"])


async def make_configuration(client: TestClient, user: ApiUser, **fields: Any) -> dict[str, Any]:
    """Create a configuration for `user` through the repository (the same code the admin API calls).

    Returns plain values: id, name, provider, model, base_url, is_default, api_key (plaintext, for assertions).
    The key is watched: it may appear in no answer, log, row or output of the test.
    """
    from gateway.configurations.crud import create_configuration
    from gateway.store.changes import Change
    from gateway.web.appkeys import CHANGES, KEYRING, POLICY, SESSIONMAKER

    app = client.server.app
    values: dict[str, Any] = {
        "name": f"cfg-{uuid.uuid4().hex[:8]}",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "api_key": f"sk-test-{uuid.uuid4().hex}",
    }
    values.update(fields)
    watched(values["api_key"], "tests/factories.py make_configuration()")
    async with app[SESSIONMAKER]() as session:
        config = await create_configuration(
            session, keyring=app[KEYRING], policy=app[POLICY], user_id=uuid.UUID(user.id), **values
        )
        await app[CHANGES].commit(session, Change("configurations", user.id))
        return {"id": str(config.id), "is_default": config.is_default, **values}


async def make_team(client: TestClient, owner: ApiUser, name: str | None = None) -> dict[str, Any]:
    """Create a team through POST /api/teams; `owner` is its owner."""
    resp = await client.post("/api/teams", json={"name": name or f"team-{uuid.uuid4().hex[:8]}"},
                             headers=owner.headers)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def invite(client: TestClient, owner: ApiUser, team: dict[str, Any], user: ApiUser | str,
                 role: str = "member") -> None:
    """Invite a user (or any name) into the team through the API, as `owner`: always 202."""
    name = user if isinstance(user, str) else user.name
    resp = await client.post(f"/api/teams/{team['id']}/members", json={"user": name, "role": role},
                             headers=owner.headers)
    assert resp.status == 202, await resp.text()


async def pending_invitations(client: TestClient, user: ApiUser) -> list[dict[str, Any]]:
    """The user's pending invitations, through GET /api/invitations."""
    resp = await client.get("/api/invitations", headers=user.headers)
    assert resp.status == 200, await resp.text()
    items: list[dict[str, Any]] = (await resp.json())["items"]
    return items


async def add_member(client: TestClient, owner: ApiUser, team: dict[str, Any], user: ApiUser,
                     role: str = "member") -> None:
    """Make `user` a member the honest way: `owner` invites through the API, `user` accepts its invitation."""
    await invite(client, owner, team, user, role)
    (invitation,) = [i for i in await pending_invitations(client, user) if i["team"]["id"] == team["id"]]
    resp = await client.post(f"/api/invitations/{invitation['id']}/accept", headers=user.headers)
    assert resp.status == 200, await resp.text()


async def make_team_configuration(client: TestClient, owner: ApiUser, team: dict[str, Any],
                                  **fields: Any) -> dict[str, Any]:
    """Create a team configuration through POST /api/teams/{id}/llm-configurations, as an owner.

    Returns the response object plus `api_key_plain` (the plaintext, for assertions). The key is watched."""
    values: dict[str, Any] = {
        "name": f"tcfg-{uuid.uuid4().hex[:8]}",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "api_key": f"sk-team-{uuid.uuid4().hex}",
    }
    values.update(fields)
    watched(values["api_key"], "tests/factories.py make_team_configuration()")
    resp = await client.post(f"/api/teams/{team['id']}/llm-configurations", json=values, headers=owner.headers)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return {**body, "api_key_plain": values["api_key"]}
