"""Run a script in a fresh interpreter (what a test asserts about imports cannot be seen in this process, where
other tests import litellm, multiprocessing… on purpose), with this checkout's src and tests on its path."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from gateway.app import create_app
from gateway.crypto.keyring import generate_key_entry
from gateway.settings import Settings
from gateway.store import migrate

ROOT = Path(__file__).resolve().parents[1]


def run_fresh(script: str, *args: str, timeout: float, warnings_as_errors: bool = True) -> str:
    """The script's stdout; the test fails with the end of its stderr unless it exits with 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    flags = ["-W", "error"] if warnings_as_errors else []
    result = subprocess.run([sys.executable, *flags, "-c", script, *args], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@asynccontextmanager
async def fresh_gateway(folder: Path, user: str) -> AsyncIterator[tuple[TestClient, dict[str, str]]]:
    """For the scripts run_fresh runs: the gateway on a new SQLite file in `folder`, behind a test client, and a
    user made through the admin API (as tests.factories.make_user does, without the suite's conftest); yields the
    client and that user's headers."""
    url = f"sqlite+aiosqlite:///{folder / 'gateway.db'}"
    await migrate.upgrade_async(url)
    admin = "fresh-operator-token-" + uuid.uuid4().hex
    settings = Settings(database_url=url, encryption_keys=SecretStr(generate_key_entry("k1")),
                        admin_token=SecretStr(admin), allow_private_base_urls=True, data_dir=folder)
    async with TestClient(TestServer(create_app(settings))) as client:
        made = await client.post("/api/admin/users", json={"name": user},
                                 headers={"Authorization": f"Bearer {admin}"})
        assert made.status == 201, await made.text()
        yield client, {"Authorization": f"Bearer {(await made.json())['token']}"}
