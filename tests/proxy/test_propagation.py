"""Changes reach every process: two gateway processes on one PostgreSQL, a key changed through one is used by
the other within a second; after the LISTEN connection drops, everything is reloaded (PostgreSQL only)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from pydantic import SecretStr

from gateway.app import create_app
from gateway.configurations.crud import update_configuration
from gateway.settings import Settings
from gateway.store.listener import asyncpg_dsn
from gateway.web.appkeys import KEYRING, POLICY, SESSIONMAKER
from tests.conftest import ADMIN_TOKEN
from tests.fakes.openai_upstream import FakeOpenAI, start_openai_upstream
from tests.reliability.processes import free_port

from .conftest import MESSAGES

REPO = Path(__file__).resolve().parents[2]
OLD_KEY, NEW_KEY = "sk-propagation-old-0000000001", "sk-propagation-new-0000000002"


@pytest.fixture
async def upstream(aiohttp_server: Any) -> FakeOpenAI:
    return await start_openai_upstream(aiohttp_server, keys=(OLD_KEY, NEW_KEY))


async def start_gateway(database_url: str, key_ring: str, port: int, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "LLM_GATEWAY_DATABASE_URL": database_url,
           "LLM_GATEWAY_ENCRYPTION_KEYS": key_ring, "LLM_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
           "LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS": "true", "LLM_GATEWAY_PORT": str(port)}
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "serve", env=env, cwd=REPO,
                                                    stdout=out, stderr=asyncio.subprocess.STDOUT)


async def until_healthy(http: aiohttp.ClientSession, port: int, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.returncode is None, "gateway process exited"
        try:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("gateway did not become ready")


@asynccontextmanager
async def running_gateways(database_url: str, key_ring: str, logs: Path) -> AsyncIterator[tuple[int, int]]:
    """Two `python -m gateway serve` processes on the same database, healthy; their ports. Stopped on exit."""
    ports = (free_port(), free_port())
    processes = [await start_gateway(database_url, key_ring, port, logs / f"gw{port}.log") for port in ports]
    try:
        async with aiohttp.ClientSession() as http:
            for port, process in zip(ports, processes, strict=True):
                await until_healthy(http, port, process)
        yield ports
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
            await process.wait()


@pytest.fixture
async def two_gateways(postgres_url: str, key_ring: str, tmp_path: Path) -> AsyncIterator[tuple[int, int]]:
    """Two gateway processes on the same PostgreSQL database."""
    async with running_gateways(postgres_url, key_ring, tmp_path) as ports:
        yield ports


async def test_key_changed_through_one_process_is_used_by_the_other(
    two_gateways: tuple[int, int], postgres_url: str, key_ring: str, upstream: FakeOpenAI,
) -> None:
    port_a, port_b = two_gateways
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port_a}/api/admin/users", json={"name": "prop"},
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
            assert resp.status == 201
            created = await resp.json()
        token = created["token"]
        auth = {"Authorization": f"Bearer {token}"}
        async with http.post(f"http://127.0.0.1:{port_a}/api/llm-configurations", headers=auth,
                             json={"name": "shared", "provider": "custom", "model": "m", "api_key": OLD_KEY,
                                   "base_url": upstream.url}) as resp:
            assert resp.status == 201, await resp.text()
            config = await resp.json()

        async def call_b() -> None:
            async with http.post(f"http://127.0.0.1:{port_b}/v1/chat/completions",
                                 json={"model": "x", "messages": MESSAGES}, headers=auth) as resp:
                assert resp.status == 200, await resp.text()

        await call_b()
        assert upstream.last_request.api_key == OLD_KEY  # B has cached the configuration now
        # The key is changed through process A's admin API; only LISTEN/NOTIFY can tell process B.
        async with http.patch(f"http://127.0.0.1:{port_a}/api/llm-configurations/{config['id']}", headers=auth,
                              json={"api_key": NEW_KEY}) as resp:
            assert resp.status == 200, await resp.text()
        # No cache of B expires on its own: only the notification can make it use the new key. A generous
        # deadline, not a latency bound (a loaded CI is slow, the design promises no figure).
        deadline = time.monotonic() + 20
        while upstream.last_request.api_key != NEW_KEY:
            assert time.monotonic() < deadline, "process B still used the old key after 20 s"
            await call_b()
            await asyncio.sleep(0.02)


async def test_full_reload_after_listener_reconnects(postgres_url: str, key_ring: str, tmp_path: Path,
                                                     aiohttp_client: Any, upstream: FakeOpenAI) -> None:
    settings = Settings(database_url=postgres_url, encryption_keys=SecretStr(key_ring),
                        admin_token=SecretStr(ADMIN_TOKEN), allow_private_base_urls=True, data_dir=tmp_path)
    client = await aiohttp_client(create_app(settings))
    app = client.server.app
    from tests.factories import make_configuration, make_user

    user = await make_user(client)
    config = await make_configuration(client, user, provider="custom", model="m", api_key=OLD_KEY,
                                      base_url=upstream.url)
    body = {"model": "x", "messages": MESSAGES}
    assert (await client.post("/v1/chat/completions", json=body, headers=user.headers)).status == 200
    assert upstream.last_request.api_key == OLD_KEY
    # A change whose notification is lost: written without NOTIFY, as if sent while the listener was away.
    async with app[SESSIONMAKER]() as session:
        await update_configuration(session, keyring=app[KEYRING], policy=app[POLICY], user_id=uuid.UUID(user.id),
                                   configuration_id=config["id"], values={}, api_key=NEW_KEY)
        await session.commit()
    assert (await client.post("/v1/chat/completions", json=body, headers=user.headers)).status == 200
    assert upstream.last_request.api_key == OLD_KEY  # cached, as it should be without a notification
    conn = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()")
        assert killed == 1
    finally:
        await conn.close()

    async def uses_new_key() -> bool:
        resp = await client.post("/v1/chat/completions", json=body, headers=user.headers)
        return resp.status == 200 and upstream.last_request.api_key == NEW_KEY

    deadline = time.monotonic() + 10
    while not await uses_new_key():
        assert time.monotonic() < deadline, "no reload after the listener reconnected"
        await asyncio.sleep(0.1)
