"""Soak: N concurrent streaming clients for D seconds plus a steady non-streamed load, against a gateway
subprocess and a fake upstream subprocess; samples errors, connections, tasks and memory once a second.

    PYTHONPATH=src python benchmarks/soak.py                       # 200 streaming clients, 60 s, 20 req/s
    PYTHONPATH=src python benchmarks/soak.py --clients 20 --duration 5 --json out.json   # the suite's smoke run

Leaks show as growth over the last half of the run: tasks and upstream connections must track the load and
return to their baseline after it, resident memory must stay flat. Exit status 1 on any error or leak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from gateway import migrate
from gateway.crypto import generate_key_entry
from tests.reliability.processes import Gateway, free_port

GAUGES = {
    "tasks": re.compile(r"^llm_gateway_asyncio_tasks (\S+)$", re.MULTILINE),
    "in_use": re.compile(r'^llm_gateway_upstream_connections\{state="in_use"\} (\S+)$', re.MULTILINE),
    "idle": re.compile(r'^llm_gateway_upstream_connections\{state="idle"\} (\S+)$', re.MULTILINE),
    "rss_mb": re.compile(r"^process_resident_memory_bytes (\S+)$", re.MULTILINE),
    "fds": re.compile(r"^process_open_fds (\S+)$", re.MULTILINE),
}
CHAT = [{"role": "user", "content": "hi"}]


@dataclass
class Tally:
    """Counts since the last sample."""

    streams: int = 0
    plain: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The gateway's runtime gauges (RSS in MB)."""
    async with http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    sample = {name: float(m.group(1)) if (m := rx.search(text)) else -1.0 for name, rx in GAUGES.items()}
    sample["rss_mb"] = round(sample["rss_mb"] / 2**20, 1)
    return sample


async def streamer(http: aiohttp.ClientSession, url: str, headers: dict[str, str], tally: Tally, until: float
                   ) -> None:
    """One streaming client: stream after stream until the end, reading every event."""
    while time.monotonic() < until:
        try:
            async with http.post(f"{url}/v1/chat/completions", headers=headers,
                                 json={"model": "x", "messages": CHAT, "stream": True}) as resp:
                body = await resp.read()
            if resp.status != 200 or not body.endswith(b"data: [DONE]\n\n") or b'"error"' in body:
                tally.error(f"stream {resp.status}")
            else:
                tally.streams += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.error(exc.__class__.__name__)


async def steady(http: aiohttp.ClientSession, url: str, headers: dict[str, str], tally: Tally, until: float,
                 rate: float) -> None:
    """Non-streamed requests at a fixed rate, each in its own task."""

    async def one() -> None:
        started = time.monotonic()
        try:
            async with http.post(f"{url}/v1/chat/completions", headers=headers,
                                 json={"model": "x", "messages": CHAT}) as resp:
                await resp.read()
            if resp.status == 200:
                tally.plain += 1
                tally.latencies.append(time.monotonic() - started)
            else:
                tally.error(f"plain {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.error(exc.__class__.__name__)

    pending: set[asyncio.Task[None]] = set()
    next_at = time.monotonic()
    while next_at < until:
        task = asyncio.create_task(one())
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_at += 1 / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.gather(*pending)


async def drive(args: argparse.Namespace, url: str, token: str) -> dict[str, Any]:
    """Run the load, sampling once a second; then let the gateway settle and sample its baseline again."""
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    await asyncio.sleep(0.5)
    async with aiohttp.ClientSession() as http:
        baseline = await scrape(http, url)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tally, totals, samples = Tally(), Tally(), []
        started = time.monotonic()
        until = started + args.duration
        load = [asyncio.create_task(streamer(http, url, headers, tally, until)) for _ in range(args.clients)]
        load.append(asyncio.create_task(steady(http, url, headers, tally, until, args.rps)))
        while time.monotonic() < until:
            await asyncio.sleep(1.0)
            sample = await scrape(http, url)
            sample |= {"t": round(time.monotonic() - started, 1), "streams": tally.streams, "plain": tally.plain,
                       "errors": tally.errors}
            samples.append(sample)
            totals.streams += tally.streams
            totals.plain += tally.plain
            totals.latencies += tally.latencies
            for kind, n in tally.error_kinds.items():
                totals.error_kinds[kind] = totals.error_kinds.get(kind, 0) + n
            totals.errors += tally.errors
            tally.streams = tally.plain = tally.errors = 0
            tally.latencies, tally.error_kinds = [], {}
            print(json.dumps(sample), flush=True)
        await asyncio.gather(*load)
        totals.streams += tally.streams
        totals.plain += tally.plain
        totals.errors += tally.errors
        totals.latencies += tally.latencies
        for kind, n in tally.error_kinds.items():
            totals.error_kinds[kind] = totals.error_kinds.get(kind, 0) + n
    # The load's keep-alive connections (each a task in the gateway) are closed now; what is left is a leak.
    await asyncio.sleep(2.0)
    async with aiohttp.ClientSession() as http:
        after = await scrape(http, url)
    return {"baseline": baseline, "after": after, "samples": samples, "totals": totals}


def verdict(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Summary numbers and the leak checks."""
    samples, totals = result["samples"], result["totals"]
    half = samples[len(samples) // 2:] or samples
    rss = [s["rss_mb"] for s in half]
    tasks = [s["tasks"] for s in half]
    latencies = sorted(totals.latencies) or [0.0]
    summary = {
        "clients": args.clients, "duration_s": args.duration, "rps": args.rps,
        "streams": totals.streams, "plain": totals.plain, "errors": totals.errors, "error_kinds": totals.error_kinds,
        "streams_per_s": round(totals.streams / args.duration, 1),
        "plain_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "plain_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1 if len(latencies) > 1 else 0] * 1000, 1),
        "rss_mb_last_half": [min(rss), max(rss)], "tasks_last_half": [min(tasks), max(tasks)],
        "in_use_max": max(s["in_use"] for s in samples), "fds_max": max(s["fds"] for s in samples),
        "baseline": result["baseline"], "after": result["after"],
    }
    leaks = []
    if result["after"]["tasks"] > result["baseline"]["tasks"] + 2:
        leaks.append("tasks did not return to baseline")
    if result["after"]["in_use"] != 0:
        leaks.append("upstream connections still checked out")
    if max(rss) - min(rss) > max(16.0, 0.1 * min(rss)):
        leaks.append("resident memory grew over the last half")
    summary["leaks"] = leaks
    summary["ok"] = totals.errors == 0 and not leaks
    return summary


def arguments(doc: str | None, *, clients: int) -> argparse.ArgumentParser:
    """The options every soak has: clients, duration, steady rate, database, JSON output."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=clients, help="concurrent streaming clients")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--rps", type=float, default=20.0, help="steady non-streamed requests per second")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--json", type=Path, help="write the summary and samples here")
    return parser


@contextmanager
def stack(prefix: str, database_url: str | None, upstream_args: list[str], env: dict[str, str]
          ) -> Iterator[tuple[Gateway, str, str, str]]:
    """A migrated database (a fresh SQLite file by default), the fake upstream and a gateway subprocess in their
    own processes; yields the gateway, its admin token, the upstream's key and the upstream's /v1 URL."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    key, admin = f"sk-soak-{uuid.uuid4().hex}", f"soak-admin-{uuid.uuid4().hex}"
    database_url = database_url or f"sqlite+aiosqlite:///{work / 'gateway.db'}"
    migrate.upgrade(database_url)
    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_upstream", "--port", str(upstream_port), "--key", key,
         *upstream_args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateway = None
    try:
        gateway = Gateway({"LLM_GATEWAY_DATABASE_URL": database_url, "LLM_GATEWAY_ADMIN_TOKEN": admin,
                           "LLM_GATEWAY_ENCRYPTION_KEYS": generate_key_entry("soak"),
                           "LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS": "true", "LLM_GATEWAY_DATA_DIR": str(work), **env},
                          work / "gateway.log")
        yield gateway, admin, key, f"http://127.0.0.1:{upstream_port}/v1"
    finally:
        if gateway is not None:
            gateway.stop()
        upstream.terminate()
        upstream.wait(10)


def main() -> int:
    parser = arguments(__doc__, clients=200)
    parser.add_argument("--chunks", type=int, default=10, help="content events per upstream stream")
    parser.add_argument("--chunk-delay", type=float, default=0.1, help="seconds between upstream events")
    args = parser.parse_args()
    with stack("llmgw-soak-", args.database_url, ["--chunks", str(args.chunks), "--chunk-delay",
                                                   str(args.chunk_delay)], {}) as (gateway, admin, key, upstream):
        token = asyncio.run(setup(gateway.url, admin, key, upstream))
        result = asyncio.run(drive(args, gateway.url, token))
    work = gateway.log.parent
    summary = verdict(result, args)
    print(json.dumps(summary, indent=1))
    if key in (work / "gateway.log").read_text():
        summary["ok"] = False
        summary["leaks"].append("the upstream key is in the gateway's log")
    if args.json:
        args.json.write_text(json.dumps({**summary, "samples": result["samples"]}, indent=1))
    return 0 if summary["ok"] else 1


async def setup(url: str, admin: str, key: str, upstream: str) -> str:
    """A user with one configuration on the fake upstream; returns the user's token."""
    async with aiohttp.ClientSession() as http:
        for _ in range(100):  # the fake upstream may still be starting
            try:
                async with http.get(f"{upstream.removesuffix('/v1')}/_fake/requests"):
                    break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        async with http.post(f"{url}/api/admin/users", json={"name": "soak"},
                             headers={"Authorization": f"Bearer {admin}"}) as resp:
            token: str = (await resp.json())["token"]
        async with http.post(f"{url}/api/llm-configurations", headers={"Authorization": f"Bearer {token}"}, json={
                "name": "soak", "provider": "custom", "model": "gpt-4o-mini", "api_key": key,
                "base_url": upstream}) as resp:
            assert resp.status == 201, await resp.text()
    return token


if __name__ == "__main__":
    raise SystemExit(main())
