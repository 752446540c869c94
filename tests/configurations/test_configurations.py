"""The configuration repository's rules, on both databases: encryption bound to the row, one default,
placeholders refused, masks keep the key, fallbacks owned, limits."""

from __future__ import annotations

import uuid

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.configurations.crud import (
    decrypt_key,
    delete_configurations,
    get_configuration,
    list_user_configurations,
    set_default,
    update_configuration,
)
from gateway.crypto.masking import is_placeholder, mask_key
from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.store.models import LLMConfiguration
from gateway.web.appkeys import KEYRING, POLICY, SESSIONMAKER
from tests.factories import make_configuration, make_user


@pytest.mark.parametrize(
    "value", ["**********", "***", "•••••", "<hidden>", "SET", "redacted", "sk-a...wxyz", "...", "  ", "null"]
)
def test_placeholders_are_recognised(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize("value", ["sk-proj-abc123def456", "gsk_live_1234567890", "AIzaSyD-real-key-value", "x" * 40])
def test_real_keys_are_not_placeholders(value: str) -> None:
    assert not is_placeholder(value)


def test_mask() -> None:
    assert mask_key("sk-abcdefghijklwxyz") == "sk-a...wxyz"
    assert mask_key("sk-abcdefghiwxyz") == "sk-a...wxyz"  # 16 characters: the shortest shown in part
    assert mask_key("12345678") == "****"
    assert mask_key("123456789") == "****"
    assert mask_key("sk-abcdefghwxyz") == "****"


async def test_first_is_default_and_the_row_holds_only_ciphertext(client: TestClient) -> None:
    app = client.server.app
    user = await make_user(client)
    first = await make_configuration(client, user)
    second = await make_configuration(client, user)
    assert first["is_default"] and not second["is_default"]
    async with app[SESSIONMAKER]() as session:
        rows = list((await session.execute(select(LLMConfiguration))).scalars())
        for row in rows:
            assert row.api_key_encrypted.startswith(f"v1.{app[KEYRING].primary_id}.")
            assert first["api_key"] not in row.api_key_encrypted and second["api_key"] not in row.api_key_encrypted
        by_id = {str(r.id): r for r in rows}
        assert decrypt_key(app[KEYRING], by_id[first["id"]]) == first["api_key"]


async def test_set_default_leaves_exactly_one(client: TestClient) -> None:
    app = client.server.app
    user = await make_user(client)
    configs = [await make_configuration(client, user) for _ in range(3)]
    async with app[SESSIONMAKER]() as session:
        await set_default(session, user_id=uuid.UUID(user.id), configuration_id=configs[2]["id"])
        await session.commit()
        rows = await list_user_configurations(session, user_id=uuid.UUID(user.id))
    assert [str(r.id) for r in rows if r.is_default] == [configs[2]["id"]]
    assert str(rows[0].id) == configs[2]["id"]  # default first


async def test_update_keeps_key_on_mask_refuses_placeholders_replaces_real(client: TestClient) -> None:
    app = client.server.app
    user = await make_user(client)
    config = await make_configuration(client, user)
    uid = uuid.UUID(user.id)
    async with app[SESSIONMAKER]() as session:
        _, changed = await update_configuration(session, keyring=app[KEYRING], policy=app[POLICY], user_id=uid,
                                                configuration_id=config["id"], values={"model": "gpt-4o"},
                                                api_key=mask_key(config["api_key"]))
        await session.commit()
        assert changed == ["model"]
        for placeholder in ("**********", "<hidden>", "SET", "****"):
            with pytest.raises(Unprocessable) as info:
                await update_configuration(session, keyring=app[KEYRING], policy=app[POLICY], user_id=uid,
                                           configuration_id=config["id"], values={}, api_key=placeholder)
            assert info.value.param == "api_key"
            await session.rollback()
        row = await get_configuration(session, user_id=uid, configuration_id=config["id"])
        assert decrypt_key(app[KEYRING], row) == config["api_key"]
        _, changed = await update_configuration(session, keyring=app[KEYRING], policy=app[POLICY], user_id=uid,
                                                configuration_id=config["id"], values={}, api_key="sk-new-real-key-1234")
        await session.commit()
        assert changed == ["api_key"]
        row = await get_configuration(session, user_id=uid, configuration_id=config["id"])
        assert decrypt_key(app[KEYRING], row) == "sk-new-real-key-1234"


async def test_isolation_fallbacks_and_delete(client: TestClient) -> None:
    app = client.server.app
    alice, bob = await make_user(client), await make_user(client)
    a1 = await make_configuration(client, alice)
    a2 = await make_configuration(client, alice, fallback_ids=[a1["id"]])
    b1 = await make_configuration(client, bob)
    async with app[SESSIONMAKER]() as session:
        with pytest.raises(NotFound):
            await get_configuration(session, user_id=uuid.UUID(alice.id), configuration_id=b1["id"])
        for bad in ([b1["id"]], [a2["id"]], [a1["id"], a1["id"]], ["nope"]):
            with pytest.raises(Unprocessable):
                await update_configuration(session, keyring=app[KEYRING], policy=app[POLICY],
                                           user_id=uuid.UUID(alice.id), configuration_id=a2["id"],
                                           values={"fallback_ids": bad})
            await session.rollback()
        deleted = await delete_configurations(session, user_id=uuid.UUID(alice.id),
                                              ids=[uuid.UUID(a1["id"]), uuid.UUID(b1["id"])])
        await session.commit()
        assert [str(d) for d in deleted] == [a1["id"]]
        (left,) = await list_user_configurations(session, user_id=uuid.UUID(alice.id))
        assert str(left.id) == a2["id"] and left.fallback_ids == [] and left.is_default
        assert len(await list_user_configurations(session, user_id=uuid.UUID(bob.id))) == 1


async def test_rules_on_create(client: TestClient) -> None:
    user = await make_user(client)
    await make_configuration(client, user, name="dup")
    with pytest.raises(Conflict):
        await make_configuration(client, user, name="dup")
    with pytest.raises(Unprocessable) as info:
        await make_configuration(client, user, provider="nope")
    assert info.value.param == "provider"
    with pytest.raises(Unprocessable) as info:
        await make_configuration(client, user, provider="custom")
    assert info.value.param == "base_url"
    with pytest.raises(Unprocessable) as info:
        await make_configuration(client, user, base_url="http://169.254.169.254/latest")
    assert info.value.param == "base_url"
    with pytest.raises(Unprocessable) as info:
        await make_configuration(client, user, api_key="**********")
    assert info.value.param == "api_key"
