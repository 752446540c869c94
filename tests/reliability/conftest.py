"""Fault fixtures: the proxy's (a recorded gateway, a fake upstream, a user, the no-key check on every log
line and answer) with short timeouts, and a way to see the gateway's tasks and upstream connections settle."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient

from gateway.appkeys import HTTP_CLIENT
from gateway.settings import Settings
from tests.proxy.conftest import client, fake, no_key_anywhere, responses, settled, user

__all__ = ["client", "fake", "no_key_anywhere", "responses", "user", "Baseline"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A short upstream timeout (what a 504 must honour) and fast usage flushes."""
    return settings.model_copy(update={"upstream_timeout_s": 0.5, "upstream_connect_timeout_s": 0.5,
                                       "cooldown_s": 0.2})


class Baseline:
    """The event loop's tasks and the upstream connector's acquired connections at one moment."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.tasks = self.task_count()

    def task_count(self) -> int:
        """Tasks alive on the loop (the test's own included, which is constant)."""
        return len(asyncio.all_tasks())

    def acquired(self) -> int:
        """Connections the upstream pool has handed out and not got back."""
        connector = self.client.server.app[HTTP_CLIENT].connector
        assert connector is not None
        return len(connector._acquired)  # noqa: SLF001 - aiohttp has no public count of connections in use

    async def settled(self, timeout: float = 3.0) -> bool:
        """True once tasks and acquired connections are back at the baseline."""
        return await settled(lambda: self.task_count() <= self.tasks and self.acquired() == 0, timeout)
