"""Attack fixtures: watched clients of the whole app (every response, log line and, after each test, every raw
row is searched for the test keys, as in tests/admin), a fake upstream, and a DNS the tests control."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app
from gateway.settings import Settings
from gateway.web.appkeys import ENGINE

# The admin tests' watch, its client and key maker, here fed by this package's own make_client.
from tests.admin.conftest import LeakWatch, _watching, client, leak_watch, new_key
from tests.fakes.openai_upstream import FakeOpenAI, start_openai_upstream

__all__ = ["MakeClient", "MapResolver", "client", "leak_watch", "new_key"]

MakeClient = Callable[..., Awaitable[TestClient]]


class MapResolver(AbstractResolver):
    """A DNS answering from a dict: a public-looking name can resolve to a private address at connect time."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(f"no such host {host}")
        return [ResolveResult(hostname=host, host=ip, port=port, family=socket.AF_INET6 if ":" in ip
                              else socket.AF_INET, proto=0, flags=socket.AI_NUMERICHOST) for ip in self.names[host]]

    async def close(self) -> None:
        """Nothing to release."""


@pytest.fixture
async def make_client(aiohttp_client: Any, settings: Settings, leak_watch: LeakWatch) -> AsyncIterator[MakeClient]:
    """Build a watched client of the whole app; `dns=` replaces the upstream name lookup, other keywords
    override settings. Private base URLs are refused unless a test allows them."""
    engines: list[AsyncEngine] = []

    async def make(dns: AbstractResolver | None = None, **overrides: Any) -> TestClient:
        overrides.setdefault("allow_private_base_urls", False)
        app = create_app(settings.model_copy(update=overrides), dns=dns)
        app.middlewares.insert(0, _watching(leak_watch))
        made: TestClient = await aiohttp_client(app)
        engines.append(app[ENGINE])
        return made

    yield make
    for engine in engines[:1]:
        await leak_watch.scan_database(engine)
    assert not leak_watch.findings, leak_watch.findings


@pytest.fixture
async def fake(aiohttp_server: Any) -> FakeOpenAI:
    """A fake OpenAI upstream on 127.0.0.1 accepting any key the tests make."""
    return await start_openai_upstream(aiohttp_server)
