"""Hostile soak: normal clients mixed with attackers (issue 12), in one process, for D seconds.

    PYTHONPATH=src python benchmarks/hostile_soak.py --duration 60 --rate 3

Four normal users send chat completions (half streamed) in a loop; one attacker runs each attack `--rate` times
a second: undecodable bytes in X-Conversation-Id, a slowloris request head, random /v1 paths, a fresh 448-char
conversation id, an upstream claiming 2**64-1 tokens, an endless answer body, an SSE event that never ends.
Prints the normal clients' errors, their usage rows (must equal their requests), every attack's outcome and
resident memory every 5 s. Exit status 1 when a normal request failed or went unrecorded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from gateway.app import create_app
from gateway.cli.serve import server_options
from gateway.crypto.keyring import generate_key_entry
from gateway.settings import Settings
from gateway.store.models import UsageRecord
from gateway.web.appkeys import SESSIONMAKER, USAGE
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI

ADMIN = "hostile-soak-operator-token"
ATTACKS = ("header", "slowloris", "path", "conversation", "tokens", "body", "event")


def rss_mib() -> int:
    """This process's resident memory."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS"))
    return int(line.split()[1]) // 1024


async def endless_body(request: web.Request) -> web.StreamResponse:
    """A JSON answer that never ends."""
    await request.read()
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        while True:
            await resp.write(b"a" * 65536)
    except ConnectionError:
        return resp


async def endless_event(request: web.Request) -> web.StreamResponse:
    """One event, then one that never ends."""
    await request.read()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    try:
        await resp.write(b'data: {"choices":[]}\n\n')
        while True:
            await resp.write(b"b" * 65536)
    except ConnectionError:
        return resp


class Soak:
    """The gateway, its upstreams and its clients for one run."""

    def __init__(self, duration: float, rate: float) -> None:
        self.stop = time.monotonic() + duration
        self.rate = rate
        self.sent = 0
        self.errors = 0
        self.outcomes: Counter[str] = Counter()
        self.samples: list[int] = []

    async def start(self, tmp: Path) -> None:
        """Upstreams, a migrated SQLite database, the gateway (served as `serve` would), users."""
        self.good = await FakeOpenAI(record=False).start()
        self.greedy = await FakeOpenAI(record=False, prompt_tokens=2**64 - 1, completion_tokens=0).start()
        hostile = web.Application()
        hostile.router.add_post("/b/v1/chat/completions", endless_body)
        hostile.router.add_post("/s/v1/chat/completions", endless_event)
        self.hostile = TestServer(hostile)
        await self.hostile.start_server()
        url, keys = f"sqlite+aiosqlite:///{tmp}/soak.db", generate_key_entry()
        # Once, before the soak's clock starts: blocking the loop here costs nothing measured.
        subprocess.run([sys.executable, "-m", "gateway", "db", "upgrade"], check=True, capture_output=True,  # noqa: ASYNC221
                       env={**os.environ, "LLM_GATEWAY_DATABASE_URL": url, "LLM_GATEWAY_ENCRYPTION_KEYS": keys})
        settings = Settings(database_url=url, encryption_keys=SecretStr(keys), admin_token=SecretStr(ADMIN),
                            allow_private_base_urls=True, data_dir=tmp, cooldown_failures=10**6,
                            client_header_timeout_s=1.0, access_log=False)
        self.app = create_app(settings)
        self.server = TestServer(self.app)
        options = {k: v for k, v in server_options(settings).items() if k != "handler_cancellation"}
        await self.server.start_server(**options)  # TestServer sets handler_cancellation itself
        self.http = aiohttp.ClientSession(base_url=f"http://{self.server.host}:{self.server.port}")
        self.normal = [await self.user(f"normal-{n}", ok=self.good.url) for n in range(4)]
        self.attacker = await self.user("attacker", ok=self.good.url, greedy=self.greedy.url,
                                        big=str(self.hostile.make_url("/b/v1")),
                                        ev=str(self.hostile.make_url("/s/v1")))

    async def user(self, name: str, **configurations: str) -> tuple[str, dict[str, str]]:
        """A user with one configuration per name → base URL; (id, auth headers)."""
        async with self.http.post("/api/admin/users", json={"name": name},
                                  headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
            made = await resp.json()
        headers = {"Authorization": f"Bearer {made['token']}"}
        for config, base_url in configurations.items():
            body = {"name": config, "provider": "custom", "model": "gpt-4o-mini", "base_url": base_url,
                    "api_key": DEFAULT_OPENAI_KEY}
            async with self.http.post("/api/llm-configurations", json=body, headers=headers) as resp:
                assert resp.status == 201, await resp.text()
        return made["id"], headers

    async def normal_client(self, headers: dict[str, str]) -> None:
        """Ordinary requests until the end; any non-200 or error event counts."""
        while time.monotonic() < self.stop:
            body = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": random.random() < 0.5}
            self.sent += 1
            try:
                async with self.http.post("/v1/chat/completions", json=body, headers={
                        **headers, "X-Conversation-Id": f"c-{random.randrange(10)}"}) as resp:
                    if resp.status != 200 or b'"error"' in await resp.read():
                        self.errors += 1
            except aiohttp.ClientError:
                self.errors += 1
            await asyncio.sleep(0.02)

    async def raw(self, data: bytes) -> bytes:
        """Bytes written as they are; whatever comes back until the server closes."""
        reader, writer = await asyncio.open_connection(self.server.host, self.server.port)
        writer.write(data)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(), 30)
        finally:
            writer.close()

    async def attack(self, kind: str) -> str:
        """One attack; its outcome (a status, or what the connection did)."""
        headers = self.attacker[1]
        if kind == "header":
            answer = await self.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nConnection: close\r\n"
                                    b"Content-Length: 2\r\nAuthorization: " + headers["Authorization"].encode() +
                                    b"\r\nX-Conversation-Id: \xff\xfe\r\n\r\n{}")
            return answer.split(b" ", 2)[1].decode()
        if kind == "slowloris":
            return "closed" if await self.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\n") == b"" else "open"
        path, body, extra = "/v1/chat/completions", {"model": "ok", "messages": []}, {}
        if kind == "path":
            path = f"/v1/{uuid.uuid4().hex}"
        elif kind == "conversation":
            extra = {"X-Conversation-Id": uuid.uuid4().hex * 7}
        else:
            body = {"model": {"tokens": "greedy", "body": "big", "event": "ev"}[kind], "messages": [],
                    "stream": kind == "event"}
        async with self.http.post(path, json=body, headers={**headers, **extra}) as resp:
            await resp.read()
            return str(resp.status)

    async def attacker_loop(self, kind: str) -> None:
        """Start one attack every 1/rate seconds, each on its own."""
        running: set[asyncio.Task[None]] = set()

        async def one() -> None:
            try:
                outcome = await self.attack(kind)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                outcome = exc.__class__.__name__
            self.outcomes[f"{kind}:{outcome}"] += 1

        while time.monotonic() < self.stop:
            task = asyncio.ensure_future(one())
            running.add(task)
            task.add_done_callback(running.discard)
            await asyncio.sleep(1 / self.rate)
        await asyncio.gather(*running)

    async def sampler(self) -> None:
        """Resident memory every 5 s."""
        while time.monotonic() < self.stop:
            self.samples.append(rss_mib())
            await asyncio.sleep(5)

    async def recorded(self) -> tuple[int, Any]:
        """Usage rows of the normal users, and the largest prompt_tokens of any row."""
        await self.app[USAGE].flush()
        ids = [uuid.UUID(user_id) for user_id, _ in self.normal]
        async with self.app[SESSIONMAKER]() as session:
            rows = (await session.execute(select(func.count()).select_from(UsageRecord)
                                          .where(UsageRecord.user_id.in_(ids)))).scalar_one()
            largest = (await session.execute(select(func.max(UsageRecord.prompt_tokens)))).scalar_one()
        return rows, largest

    async def close(self) -> None:
        """Everything started, stopped."""
        await self.http.close()
        await self.server.close()
        await self.hostile.close()
        await self.good.close()
        await self.greedy.close()


async def main(duration: float, rate: float) -> int:
    """Run the soak; 1 when a normal request failed or went unrecorded."""
    soak = Soak(duration, rate)
    with tempfile.TemporaryDirectory() as tmp:
        await soak.start(Path(tmp))
        try:
            await asyncio.gather(soak.sampler(), *(soak.normal_client(h) for _, h in soak.normal),
                                 *(soak.attacker_loop(kind) for kind in ATTACKS))
            rows, largest = await soak.recorded()
            print(f"normal requests {soak.sent}, errors {soak.errors}, usage rows {rows}")
            print(f"attacks {sum(soak.outcomes.values())}: {dict(sorted(soak.outcomes.items()))}")
            print(f"largest prompt_tokens {largest}, usage rows dropped {soak.app[USAGE].dropped}")
            print(f"RSS MiB every 5 s: {soak.samples}, at the end {rss_mib()}")
        finally:
            await soak.close()
    return 0 if soak.errors == 0 and rows == soak.sent else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=3.0, help="each attack, per second")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.duration, args.rate)))
