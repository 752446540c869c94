"""RSS and CPU of the serve path, in one process: imports, the web page, then N OpenAI-compatible requests.

Less noisy on a shared machine than requests/s: `python -m benchmarks.memory_probe [--requests 500]` prints
VmRSS (MiB) after each phase and the CPU seconds the imports took (SQLite, a fake upstream in-process).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path


def rss_mib() -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


async def _drive(folder: Path, requests: int) -> None:
    from aiohttp.test_utils import TestClient, TestServer
    from pydantic import SecretStr

    from gateway.app import create_app
    from gateway.crypto.keyring import generate_key_entry
    from gateway.settings import Settings
    from tests.fakes.openai_upstream import FakeOpenAI

    admin = "probe-operator-" + uuid.uuid4().hex
    settings = Settings(database_url=f"sqlite+aiosqlite:///{folder / 'gateway.db'}", data_dir=folder,
                        encryption_keys=SecretStr(generate_key_entry("k1")), admin_token=SecretStr(admin),
                        allow_private_base_urls=True)
    key = "sk-probe-" + uuid.uuid4().hex
    async with FakeOpenAI(keys=[key]) as fake, TestClient(TestServer(create_app(settings))) as client:
        print(f"started        {rss_mib():6.1f} MiB")
        made = await client.post("/api/admin/users", json={"name": "probe"},
                                 headers={"Authorization": f"Bearer {admin}"})
        headers = {"Authorization": f"Bearer {(await made.json())['token']}"}
        await client.post("/api/llm-configurations", headers=headers, json={
            "name": "c", "provider": "openai", "model": "gpt-4o-mini", "api_key": key, "base_url": fake.url})
        for path in ("/ui/", "/ui/settings", "/ui/usage"):
            await client.get(path)
        for path in ("/api/providers", "/api/llm-configurations", "/api/llm-configurations/stats",
                     "/api/migrations/status", "/api/templates", "/api/usage"):
            await client.get(path, headers=headers)
        print(f"web page       {rss_mib():6.1f} MiB")
        body = {"model": "c", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(requests // 32):
            await asyncio.gather(*(client.post("/v1/chat/completions", headers=headers, json=body) for _ in range(32)))
        print(f"{requests} requests {rss_mib():6.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=512)
    args = parser.parse_args()
    started = time.process_time()
    import gateway.app
    import gateway.cli.main
    import gateway.cli.serve  # noqa: F401  (what `serve` imports)

    print(f"imports        {rss_mib():6.1f} MiB  {time.process_time() - started:.3f} s CPU  {len(sys.modules)} modules")
    with tempfile.TemporaryDirectory() as folder:
        # Alembic in a child process: `serve` on an up-to-date database never imports it.
        url = f"sqlite+aiosqlite:///{Path(folder) / 'gateway.db'}"
        subprocess.run([sys.executable, "-c", f"from gateway.store import migrate; migrate.upgrade({url!r})"],
                       check=True)
        asyncio.run(_drive(Path(folder), args.requests))


if __name__ == "__main__":
    main()
