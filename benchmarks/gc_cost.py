"""The garbage collector's share of a proxied request, per generation, under two sets of thresholds.

    python -m benchmarks.gc_cost [--requests 20000] [--thresholds 700,10,10 7000,20,100]

One process holds the gateway (SQLite), the fake OpenAI upstream and the client (32 requests in flight), set up
as `serve` does (start-up objects frozen). gc.callbacks time every collection: unlike requests/s on a shared
machine, collections per request are exact, and their duration moves far less than the whole request's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from benchmarks.prepare import fill
from benchmarks.procs import MODEL
from gateway.app import create_app
from gateway.crypto.keyring import generate_key_entry
from gateway.settings import Settings
from tests.fakes.openai_upstream import FakeOpenAI

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello in one short sentence."}], "max_tokens": 32}


class Watch:
    """Counts and times collections by generation."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            generation = info["generation"]
            self.count[generation] += 1
            self.seconds[generation] += time.perf_counter() - self._started


async def measure(folder: Path, thresholds: tuple[int, int, int], requests: int) -> str:
    url = f"sqlite+aiosqlite:///{folder / f'gc-{uuid.uuid4().hex[:6]}.db'}"
    keys, key = generate_key_entry("k1"), "sk-gc-" + uuid.uuid4().hex
    settings = Settings(database_url=url, encryption_keys=SecretStr(keys), allow_private_base_urls=True,
                        data_dir=folder, access_log=False)
    async with FakeOpenAI(keys=[key]) as fake:
        token = await fill(url, keys, fake.url, key, translated=False)  # migrates, as `serve` expects
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        headers = {"Authorization": f"Bearer {token}"}

        async def worker(n: int) -> None:
            for _ in range(n):
                async with client.post("/v1/chat/completions", headers=headers, json=BODY) as resp:
                    assert resp.status == 200
                    await resp.read()

        watch = Watch()
        try:
            await asyncio.gather(*(worker(50) for _ in range(32)))  # warm-up
            gc.collect()
            gc.freeze()
            gc.set_threshold(*thresholds)
            gc.callbacks.append(watch)
            cpu = time.process_time()
            await asyncio.gather(*(worker(requests // 32) for _ in range(32)))
            cpu = time.process_time() - cpu
        finally:
            if watch in gc.callbacks:
                gc.callbacks.remove(watch)
            gc.unfreeze()
            await client.close()
    done = requests // 32 * 32
    per_k = " / ".join(f"{c * 1000 / done:.2f}" for c in watch.count)
    us = " / ".join(f"{s * 1e6 / done:.2f}" for s in watch.seconds)
    return (f"| {','.join(map(str, thresholds))} | {per_k} | {us} | {sum(watch.seconds) * 1e6 / done:.2f} | "
            f"{watch.seconds[2] / watch.count[2] * 1e3 if watch.count[2] else 0.0:.2f} | {cpu * 1e6 / done:.0f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--thresholds", nargs="+", default=["700,10,10", "7000,20,100"])
    args = p.parse_args(argv)
    print("| thresholds | collections per 1000 requests (gen 0/1/2) | GC µs/request (gen 0/1/2) | GC µs/request | "
          "ms per full collection | process CPU µs/request (gateway + upstream + client) |")
    print("|---|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for text in args.thresholds:
            a, b, c = (int(v) for v in text.split(","))
            print(asyncio.run(measure(Path(tmp), (a, b, c), args.requests)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
