"""Audit events: every create, update (field names only), delete and set-default; each user sees their own."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.accounts.audit import record
from gateway.store.models import AuditEvent
from gateway.web.appkeys import SESSIONMAKER
from tests.admin.helpers import URL, create
from tests.factories import make_user

AUDIT = "/api/audit-events"


async def test_writes_are_audited_without_key_values(client: TestClient, new_key: Callable[..., str]) -> None:
    alice, bob = await make_user(client), await make_user(client)
    first = await create(client, alice, new_key(), name="first")
    second = await create(client, alice, new_key(), name="second")
    await client.patch(f"{URL}/{first['id']}", json={"model": "gpt-4o", "api_key": new_key()}, headers=alice.headers)
    await client.patch(f"{URL}/{first['id']}", json={"api_key": first["api_key"]}, headers=alice.headers)  # no change
    await client.put(f"{URL}/{second['id']}/set-default", headers=alice.headers)
    await client.delete(f"{URL}/{first['id']}", headers=alice.headers)
    await client.post(f"{URL}/bulk-delete", json={"ids": [second["id"]]}, headers=alice.headers)
    await create(client, bob, new_key())

    resp = await client.get(AUDIT, headers=alice.headers)
    assert resp.status == 200
    body = await resp.json()
    actions = [(e["action"], e["configuration_id"]) for e in reversed(body["items"])]
    assert actions == [("create", first["id"]), ("create", second["id"]), ("update", first["id"]),
                       ("set_default", second["id"]), ("delete", first["id"]), ("delete", second["id"])]
    assert body["total"] == 6
    update = next(e for e in body["items"] if e["action"] == "update")
    assert update["details"] == {"fields": ["api_key", "model"]} and update["actor"] == alice.name
    assert {e["details"]["name"] for e in body["items"] if e["action"] == "delete"} == {"first", "second"}

    bobs = await (await client.get(AUDIT, headers=bob.headers)).json()
    assert [e["action"] for e in bobs["items"]] == ["create"] and bobs["total"] == 1

    filtered = await (await client.get(f"{AUDIT}?action=delete&limit=1", headers=alice.headers)).json()
    assert filtered["total"] == 2 and len(filtered["items"]) == 1 and filtered["items"][0]["action"] == "delete"
    by_config = await (await client.get(f"{AUDIT}?configuration_id={second['id']}", headers=alice.headers)).json()
    assert {e["action"] for e in by_config["items"]} == {"create", "set_default", "delete"}
    for bad in ("action=%00", "action=", "configuration_id=nope", "limit=0"):
        assert (await client.get(f"{AUDIT}?{bad}", headers=alice.headers)).status == 400


async def test_refused_writes_leave_no_event(client: TestClient, new_key: Callable[..., str]) -> None:
    user = await make_user(client)
    config = await create(client, user, new_key())
    await client.patch(f"{URL}/{config['id']}", json={"api_key": "**********"}, headers=user.headers)
    await client.patch(f"{URL}/{uuid.uuid4()}", json={"model": "x"}, headers=user.headers)
    body = await (await client.get(AUDIT, headers=user.headers)).json()
    assert [e["action"] for e in body["items"]] == ["create"]


@pytest.mark.parametrize("details", [{"api_key": "x"}, {"changes": {"Token": "x"}}, {"key": "x"}])
async def test_record_refuses_details_that_could_hold_a_key(client: TestClient, details: dict[str, object]) -> None:
    user = await make_user(client)
    async with client.server.app[SESSIONMAKER]() as session:
        with pytest.raises(ValueError, match="must not hold"):
            record(session, user_id=uuid.UUID(user.id), actor="t", action="update", details=details)
        assert (await session.execute(select(AuditEvent))).first() is None
