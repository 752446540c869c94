"""Fault fixtures: the proxy's (a recorded gateway, a fake upstream, a user, the no-key check on every log
line and answer) with short timeouts, a way to see the gateway's tasks and upstream connections settle, and
for process-level tests a private PostgreSQL cluster, a standalone fake upstream and a gateway's environment."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from gateway.store import migrate
from gateway.web.appkeys import HTTP_CLIENT
from tests.conftest import ADMIN_TOKEN
from tests.leakwatch import watched
from tests.proxy.conftest import client, fake, no_key_anywhere, responses, user
from tests.reliability.processes import ROOT, PrivateCluster, free_port
from tests.waiting import settled

__all__ = ["Baseline", "client", "fake", "no_key_anywhere", "responses", "user"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A short upstream timeout (what a 504 must honour), yet long enough for a loaded CI's healthy answers."""
    return settings.model_copy(update={"upstream_timeout_s": 2.0, "upstream_connect_timeout_s": 2.0,
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
        return len(connector._acquired)

    async def settled(self, timeout: float = 30.0) -> bool:
        """True once tasks and acquired connections are back at the baseline."""
        return await settled(lambda: self.task_count() <= self.tasks and self.acquired() == 0, timeout)


@pytest.fixture(scope="package")
def cluster() -> Iterator[PrivateCluster]:
    """A throwaway PostgreSQL cluster for the process-level tests (never the machine's shared one)."""
    made = PrivateCluster()
    try:
        made.start()
        yield made
    finally:
        made.destroy()


@pytest.fixture
def cluster_database(cluster: PrivateCluster) -> str:
    """A fresh, migrated database in the private cluster."""
    name = f"llmgw_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres", timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    url = cluster.url.rsplit("/", 1)[0] + f"/{name}"
    migrate.upgrade(url)
    return url


@pytest.fixture
def upstream_key() -> str:
    """The one API key the standalone fake upstream accepts (watched: see tests/leakwatch.py)."""
    return watched(f"sk-reliability-{uuid.uuid4().hex}", "tests/reliability/conftest.py upstream_key")


@pytest.fixture
def standalone_upstream(upstream_key: str, tmp_path: Path) -> Iterator[str]:
    """tests/fakes/openai_upstream.py in its own process; yields its base URL."""
    port = free_port()
    with (tmp_path / "upstream.log").open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_upstream", "--port", str(port),
                                    "--key", upstream_key], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/_fake/requests", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the fake upstream did not start") from None
                time.sleep(0.1)
        yield f"{url}/v1"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def gateway_env(cluster_database: str, key_ring: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a gateway subprocess on the private cluster."""
    return {"LLM_GATEWAY_DATABASE_URL": cluster_database, "LLM_GATEWAY_ENCRYPTION_KEYS": key_ring,
            "LLM_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN, "LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS": "true",
            "LLM_GATEWAY_USAGE_FLUSH_INTERVAL_S": "0.1", "LLM_GATEWAY_DATA_DIR": str(tmp_path / "data")}
