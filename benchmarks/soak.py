"""Soak: N concurrent streaming clients for D seconds plus a steady non-streamed load, against a gateway
subprocess and a fake upstream subprocess; samples errors, connections, tasks and memory once a second.

    PYTHONPATH=src python benchmarks/soak.py                       # 200 streaming clients, 60 s, 20 req/s
    PYTHONPATH=src python benchmarks/soak.py --clients 20 --duration 5 --json out.json   # the suite's smoke run
    PYTHONPATH=src python benchmarks/soak.py --profile many-streams   # 2,000 10-s streams + 20 plain req/s, 60 s

Reports the plain requests' latency (p50/p99) under the streams, errors, 503s (admission said overloaded), the
gateway's memory over time, the machine's load average, and usage rows accounted against requests sent.

Leaks show as growth over the last half of the run: tasks and upstream connections must track the load and
return to their baseline after it, resident memory must stay flat. Exit status 1 on any error or leak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from sqlalchemy import text

from benchmarks.procs import install_uvloop
from gateway.crypto.keyring import generate_key_entry
from gateway.store import migrate
from gateway.store.db import make_engine
from tests.reliability.processes import Gateway, free_port

GAUGES = {
    "tasks": re.compile(r"^llm_gateway_asyncio_tasks (\S+)$", re.MULTILINE),
    "in_use": re.compile(r'^llm_gateway_upstream_connections\{state="in_use"\} (\S+)$', re.MULTILINE),
    "idle": re.compile(r'^llm_gateway_upstream_connections\{state="idle"\} (\S+)$', re.MULTILINE),
    "rss_mb": re.compile(r"^process_resident_memory_bytes (\S+)$", re.MULTILINE),
    "fds": re.compile(r"^process_open_fds (\S+)$", re.MULTILINE),
    "open_streams": re.compile(r"^llm_gateway_open_streams (\S+)$", re.MULTILINE),
    "queued": re.compile(r"^llm_gateway_queued_requests (\S+)$", re.MULTILINE),
    "cpu_s": re.compile(r"^process_cpu_seconds_total (\S+)$", re.MULTILINE),
}
# Named sets of defaults; flags given on the command line win.
PROFILES: dict[str, dict[str, Any]] = {
    # Chat interfaces: thousands of streams open for ~10 s each, and ordinary requests that must not wait.
    "many-streams": {"clients": 2000, "duration": 60.0, "rps": 20.0, "chunks": 20, "chunk_delay": 0.5,
                     "users": 8},
}
CHAT = [{"role": "user", "content": "hi"}]


@dataclass
class Tally:
    """Counts since the last sample."""

    streams: int = 0
    plain: int = 0
    errors: int = 0
    sent: int = 0
    overloaded: int = 0  # 503 gateway_overloaded: an explicit answer, counted apart from errors
    latencies: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def failed(self, what: str, status: int) -> None:
        """A non-200 answer: a 503 is the gateway shedding load, anything else an error."""
        if status == 503:
            self.overloaded += 1
        else:
            self.error(f"{what} {status}")

    def add(self, other: Tally) -> None:
        """Fold another tally's counts into this one."""
        for name in ("streams", "plain", "errors", "sent", "overloaded"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies += other.latencies
        for kind, n in other.error_kinds.items():
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + n


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
        tally.sent += 1
        try:
            async with http.post(f"{url}/v1/chat/completions", headers=headers,
                                 json={"model": "x", "messages": CHAT, "stream": True}) as resp:
                body = await resp.read()
            if resp.status != 200:
                tally.failed("stream", resp.status)
            elif not body.endswith(b"data: [DONE]\n\n") or b'"error"' in body:
                tally.error("stream cut")
            else:
                tally.streams += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.error(exc.__class__.__name__)


async def steady(http: aiohttp.ClientSession, url: str, headers: dict[str, str], tally: Tally, until: float,
                 rate: float) -> None:
    """Non-streamed requests at a fixed rate, each in its own task."""

    async def one() -> None:
        started = time.monotonic()
        tally.sent += 1
        try:
            async with http.post(f"{url}/v1/chat/completions", headers=headers,
                                 json={"model": "x", "messages": CHAT}) as resp:
                await resp.read()
            if resp.status == 200:
                tally.plain += 1
                tally.latencies.append(time.monotonic() - started)
            else:
                tally.failed("plain", resp.status)
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


def plain_load(url: str, token: str, started: float, until: float, rate: float, out: Any) -> None:
    """The steady load in a process of its own, so the streaming clients' busy event loop does not delay it:
    its latencies are the gateway's (and the machine's), not the load generator's."""

    async def run() -> Tally:
        tally = Tally()
        await asyncio.sleep(max(0.0, started - time.monotonic()))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await steady(http, url, _bearer(token), tally, until, rate)
        return tally

    out.send(asyncio.run(run()))
    out.close()


async def drive(args: argparse.Namespace, url: str, stream_tokens: list[str], plain: Any, started: float,
                database_url: str) -> dict[str, Any]:
    """Run the streams (the plain load runs in its own process), sampling once a second; then let the gateway
    settle and sample its baseline again."""
    connector = aiohttp.TCPConnector(limit=0)
    # A read timeout, not a total: on a loaded machine a stream may take longer than planned and still be fine.
    timeout = aiohttp.ClientTimeout(sock_connect=30, sock_read=60)
    async with aiohttp.ClientSession() as http:
        baseline = await scrape(http, url)
    await asyncio.sleep(max(0.0, started - time.monotonic()))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tally, totals, samples = Tally(), Tally(), []
        until = started + args.duration
        load = [asyncio.create_task(streamer(http, url, _bearer(stream_tokens[n % len(stream_tokens)]), tally,
                                             until)) for n in range(args.clients)]
        while time.monotonic() < until:
            await asyncio.sleep(1.0)
            sample = await scrape(http, url)
            sample |= {"t": round(time.monotonic() - started, 1), "streams": tally.streams, "errors": tally.errors,
                       "overloaded": tally.overloaded, "load1": os.getloadavg()[0]}
            samples.append(sample)
            totals.add(tally)
            tally = _restart(tally)
            print(json.dumps(sample), flush=True)
        await asyncio.gather(*load)
        totals.add(tally)
        totals.add(await asyncio.to_thread(plain.recv))
    # The load's keep-alive connections (each a task in the gateway) are closed now; what is left is a leak.
    await asyncio.sleep(2.0)
    async with aiohttp.ClientSession() as http:
        after = await scrape(http, url)
    return {"baseline": baseline, "after": after, "samples": samples, "totals": totals,
            "usage_rows": await usage_rows(database_url)}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _restart(tally: Tally) -> Tally:
    """Zero the per-sample counts in place (the load tasks hold this object)."""
    tally.streams = tally.plain = tally.errors = tally.sent = tally.overloaded = 0
    tally.latencies, tally.error_kinds = [], {}
    return tally


async def usage_rows(database_url: str) -> int:
    """Rows in usage_records: one per proxied request, once the gateway's batches are written."""
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT count(*) FROM usage_records"))).scalar_one())
    finally:
        await engine.dispose()


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[max(0, int(len(ordered) * share) - 1)]


def verdict(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Summary numbers and the leak checks."""
    samples, totals = result["samples"], result["totals"]
    half = samples[len(samples) // 2:] or samples
    rss = [s["rss_mb"] for s in half]
    tasks = [s["tasks"] for s in half]
    latencies = sorted(totals.latencies) or [0.0]
    summary = {
        "clients": args.clients, "duration_s": args.duration, "rps": args.rps, "users": args.users,
        "stream_s": round(args.chunks * args.chunk_delay, 1),
        "streams": totals.streams, "plain": totals.plain, "errors": totals.errors, "error_kinds": totals.error_kinds,
        "overloaded_503": totals.overloaded, "sent": totals.sent, "usage_rows": result["usage_rows"],
        "streams_per_s": round(totals.streams / args.duration, 1),
        "plain_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "plain_p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
        "plain_max_ms": round(latencies[-1] * 1000, 1),
        "rss_mb_last_half": [min(rss), max(rss)], "tasks_last_half": [min(tasks), max(tasks)],
        "rss_mb_every_10s": [s["rss_mb"] for s in samples[9::10]],
        "open_streams_max": max(s["open_streams"] for s in samples), "queued_max": max(s["queued"] for s in samples),
        "in_use_max": max(s["in_use"] for s in samples), "fds_max": max(s["fds"] for s in samples),
        "load1": [min(s["load1"] for s in samples), max(s["load1"] for s in samples)],
        # Cores the gateway got: below 1 on a loaded machine means it waited for a CPU, not for anything of its own.
        "gateway_cpu_cores": round((samples[-1]["cpu_s"] - samples[0]["cpu_s"])
                                   / max(0.1, samples[-1]["t"] - samples[0]["t"]), 2),
        "baseline": result["baseline"], "after": result["after"],
    }
    leaks = []
    if result["after"]["tasks"] > result["baseline"]["tasks"] + 2:
        leaks.append("tasks did not return to baseline")
    if result["after"]["in_use"] != 0:
        leaks.append("upstream connections still checked out")
    if max(rss) - min(rss) > max(16.0, 0.1 * min(rss)):
        leaks.append("resident memory grew over the last half")
    if result["usage_rows"] != totals.sent:
        leaks.append(f"{totals.sent} requests sent but {result['usage_rows']} usage rows")
    summary["leaks"] = leaks
    summary["ok"] = totals.errors == 0 and not leaks
    return summary


def parse_args() -> argparse.Namespace:
    """Flags over the chosen profile's defaults."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), help="a named set of defaults (flags still win)")
    parser.add_argument("--clients", type=int, default=200, help="concurrent streaming clients")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--rps", type=float, default=20.0, help="steady non-streamed requests per second")
    parser.add_argument("--chunks", type=int, default=10, help="content events per upstream stream")
    parser.add_argument("--chunk-delay", type=float, default=0.1, help="seconds between upstream events")
    parser.add_argument("--users", type=int, default=1, help="users the streams are spread over (the plain "
                        "load has its own): each user may hold MAX_CONCURRENT_REQUESTS_PER_USER at once")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--json", type=Path, help="write the summary and samples here")
    first = parser.parse_known_args()[0]
    if first.profile:
        parser.set_defaults(**PROFILES[first.profile])
    return parser.parse_args()


def _yield_cpu() -> None:
    """Lower this process' CPU priority: on one machine the fake upstream and the streaming clients stand in for
    other machines, and must not take the gateway's CPU (everything else on the machine still competes)."""
    os.nice(10)


def main() -> int:
    args = parse_args()
    install_uvloop()  # the load generator must not be the bottleneck (the fake upstream uses it too)
    # The load generator holds as many sockets as there are clients.
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    work = Path(tempfile.mkdtemp(prefix="llmgw-soak-"))
    key, admin = f"sk-soak-{uuid.uuid4().hex}", f"soak-admin-{uuid.uuid4().hex}"
    database_url = args.database_url or f"sqlite+aiosqlite:///{work / 'gateway.db'}"
    migrate.upgrade(database_url)
    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_upstream", "--port", str(upstream_port), "--key", key,
         "--chunks", str(args.chunks), "--chunk-delay", str(args.chunk_delay)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_yield_cpu)
    gateway = plain = None
    try:
        # Up before the gateway picks its own free port: until the fake binds, its port looks free too.
        wait_for_upstream(f"http://127.0.0.1:{upstream_port}")
        gateway = Gateway({"LLM_GATEWAY_DATABASE_URL": database_url, "LLM_GATEWAY_ADMIN_TOKEN": admin,
                           "LLM_GATEWAY_ENCRYPTION_KEYS": generate_key_entry("soak"),
                           "LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS": "true", "LLM_GATEWAY_DATA_DIR": str(work)},
                          work / "gateway.log")
        tokens = asyncio.run(setup(gateway.url, admin, key, f"http://127.0.0.1:{upstream_port}/v1", args.users + 1))
        # Forked before any event loop runs here; both loads start at the same moment.
        started = time.monotonic() + 1.0
        receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
        plain = multiprocessing.get_context("fork").Process(
            target=plain_load, args=(gateway.url, tokens[0], started, started + args.duration, args.rps, send))
        plain.start()
        _yield_cpu()  # the streaming clients too (the plain load keeps its priority: it measures)
        result = asyncio.run(drive(args, gateway.url, tokens[1:], receive, started, database_url))
    finally:
        if plain is not None:
            plain.join(10)
        if gateway is not None:
            gateway.stop()
        upstream.terminate()
        upstream.wait(10)
    summary = verdict(result, args)
    print(json.dumps(summary, indent=1))
    if key in (work / "gateway.log").read_text():
        summary["ok"] = False
        summary["leaks"].append("the upstream key is in the gateway's log")
    if args.json:
        args.json.write_text(json.dumps({**summary, "samples": result["samples"]}, indent=1))
    return 0 if summary["ok"] else 1


def wait_for_upstream(url: str) -> None:
    """Until the fake upstream answers (it starts at a low priority)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/_fake/requests", timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def setup(url: str, admin: str, key: str, upstream: str, users: int) -> list[str]:
    """`users` users, each with one configuration on the fake upstream; returns their tokens."""
    tokens = []
    async with aiohttp.ClientSession() as http:
        for n in range(users):
            async with http.post(f"{url}/api/admin/users", json={"name": f"soak-{n}"},
                                 headers=_bearer(admin)) as resp:
                token: str = (await resp.json())["token"]
            async with http.post(f"{url}/api/llm-configurations", headers=_bearer(token), json={
                    "name": "soak", "provider": "custom", "model": "gpt-4o-mini", "api_key": key,
                    "base_url": upstream}) as resp:
                assert resp.status == 201, await resp.text()
            tokens.append(token)
    return tokens


if __name__ == "__main__":
    raise SystemExit(main())
