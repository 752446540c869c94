"""Client libraries people point at a gateway, against the whole gateway on a real port and a fake OpenAI
upstream: each test makes the calls the library makes in real use and checks what it hands its caller."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

# litellm as a client must not fetch its price list from the network at import (set before any import of it).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest
from aiohttp.test_utils import TestClient

from tests.factories import make_configuration, make_user
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI, start_openai_upstream

CONFIGURATION = "gpt-fake"  # the configuration name clients pass as their model
MESSAGES = [{"role": "user", "content": "Say hello"}]


@dataclass(frozen=True)
class Gateway:
    """Where a client library is pointed: the gateway's /v1 URL, a user's token, the fake behind it."""

    url: str
    token: str
    fake: FakeOpenAI
    client: TestClient


@pytest.fixture
async def gateway(client: TestClient, aiohttp_server: Any) -> Gateway:
    """The gateway with one user whose configuration CONFIGURATION sends to a fake OpenAI."""
    fake = await start_openai_upstream(aiohttp_server, prompt_tokens=12, completion_tokens=5)
    user = await make_user(client)
    await make_configuration(client, user, name=CONFIGURATION, provider="custom", model="gpt-4o-mini",
                             base_url=fake.url, api_key=DEFAULT_OPENAI_KEY)
    return Gateway(str(client.make_url("/v1")), user.token, fake, client)
