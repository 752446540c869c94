"""Small helpers for admin API tests: create through the API, read back what the database holds."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.configurations.crud import decrypt_key
from gateway.store.models import LLMConfiguration
from gateway.web.appkeys import KEYRING, SESSIONMAKER
from tests.factories import ApiUser

URL = "/api/llm-configurations"


async def create(client: TestClient, user: ApiUser, api_key: str, **fields: Any) -> dict[str, Any]:
    """POST a configuration; returns the response object."""
    body = {"name": f"cfg-{uuid.uuid4().hex[:8]}", "provider": "openai", "model": "gpt-4o-mini", "api_key": api_key}
    body.update(fields)
    resp = await client.post(URL, json=body, headers=user.headers)
    assert resp.status == 201, await resp.text()
    created: dict[str, Any] = await resp.json()
    return created


async def row(client: TestClient, config_id: str) -> LLMConfiguration:
    """The configuration's row as stored."""
    async with client.server.app[SESSIONMAKER]() as session:
        found = (await session.execute(
            select(LLMConfiguration).where(LLMConfiguration.id == uuid.UUID(config_id))
        )).scalar_one()
    return found


async def stored_key(client: TestClient, config_id: str) -> str:
    """The plaintext key the database holds for a configuration (decrypted as the proxy would)."""
    return decrypt_key(client.server.app[KEYRING], await row(client, config_id))


async def defaults(client: TestClient, user: ApiUser) -> list[str]:
    """Ids of the user's default configurations, as stored."""
    async with client.server.app[SESSIONMAKER]() as session:
        ids = (await session.execute(
            select(LLMConfiguration.id).where(LLMConfiguration.user_id == uuid.UUID(user.id),
                                              LLMConfiguration.is_default.is_(True))
        )).scalars()
        return [str(i) for i in ids]


def mask(key: str) -> str:
    """The masked form the API shows."""
    return "****" if len(key) < 16 else f"{key[:4]}...{key[-4:]}"
