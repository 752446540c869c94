"""The openai Node SDK (pinned in tests/clients/node/package.json) against the gateway: chat, streams,
completions, embeddings, responses, models and errors as the SDK's classes. Runs where node is installed;
under CI (CI=true) a missing node fails rather than skips."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import parts

from .conftest import CONFIGURATION, Gateway

NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="session")
def node_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/clients/node installed with `npm ci` (the lock file's exact versions) into a temporary folder."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        parts.missing("Node client", "node or npm not found: install them with `apt-get install nodejs npm`")
    folder = tmp_path_factory.mktemp("node-client")
    for name in ("package.json", "package-lock.json", "smoke.mjs"):
        shutil.copy(NODE_DIR / name, folder / name)
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


async def test_node_sdk(gateway: Gateway, node_project: Path) -> None:
    env = {**os.environ, "GATEWAY_URL": gateway.url, "GATEWAY_TOKEN": gateway.token, "MODEL": CONFIGURATION}
    proc = await asyncio.create_subprocess_exec("node", "smoke.mjs", cwd=node_project, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    content = gateway.fake.behaviour.content
    assert json.loads(stdout) == {
        "chat": content, "stream": content, "completion": content, "embedding": 8, "response": content,
        "responseStream": content, "models": [CONFIGURATION], "authError": "AuthenticationError",
        "badRequest": "BadRequestError:api_base",
    }
