"""Hostile soak: benchmarks/soak.py's normal clients, plus an attacker with a token of their own sending a few
requests per second of each attack of issue 12, against a gateway subprocess:

  conversation-id  a non-UTF-8 X-Conversation-Id (raw bytes on the wire)
  huge-tokens      a configuration whose upstream (the attacker's) reports 2^64, 2^40 or 2^31 tokens
  random-path      random /v1 paths (metrics labels, routing)
  oversized        bodies past MAX_BODY_BYTES
  placeholder      configurations saved with a placeholder key (`**********`, `<hidden>`)
  move-key         base_url moved to the attacker's host without a new key, then Test (does the key follow?)

    PYTHONPATH=src python benchmarks/hostile_soak.py                          # 20 clients, 60 s, 3 attacks/s each
    PYTHONPATH=src python benchmarks/hostile_soak.py --duration 5 --json out.json

Reports the normal clients' errors, how many of their successful requests the usage report accounts for, RSS
in the first and second half, each attack's answers, and whether the attacker's host ever received a key.
Exit status 1 unless: no normal error, every normal request accounted, memory flat, no key exfiltrated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import string
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1])]

from benchmarks.soak import Tally, arguments, scrape, setup, stack, steady, streamer
from tests.reliability.processes import Gateway, free_port

CHAT = [{"role": "user", "content": "hi"}]
HUGE = (2**64, 2**40, 2**31)  # past the JSON parsers' integers; past a 32-bit INTEGER column, far and just
ATTACKS = ["conversation-id", "huge-tokens", "random-path", "oversized", "placeholder", "move-key"]


class AttackerHost:
    """The attacker's own upstream: answers with huge token counts and keeps every Authorization it receives."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.answer)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.port = free_port()

    async def start(self) -> str:
        """Serve on 127.0.0.1; returns the /v1 base URL."""
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return f"http://127.0.0.1:{self.port}/v1"

    async def answer(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth:
            self.received.append(auth)
        # Written by hand: 2^64 does not fit the JSON libraries' integers, and that is the point.
        huge = random.choice(HUGE)
        body = ('{"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [{"index": 0, '
                '"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}], '
                f'"usage": {{"prompt_tokens": {huge}, "completion_tokens": {huge}, "total_tokens": {huge}}}}}')
        return web.Response(text=body, content_type="application/json")


class Attacker:
    """One user of the gateway running every attack at a fixed rate; tallies the answers per attack."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str, host_url: str, key: str) -> None:
        self.http, self.url, self.host_url, self.key = http, url, host_url, key
        self.headers = {"Authorization": f"Bearer {token}"}
        self.answers: dict[str, Counter[str]] = {}
        self.legit_url = ""

    def count(self, attack: str, outcome: str) -> None:
        self.answers.setdefault(attack, Counter())[outcome] += 1

    async def post(self, attack: str, path: str, **kwargs: Any) -> Any:
        async with self.http.post(f"{self.url}{path}", headers={**self.headers, **kwargs.pop("headers", {})},
                                  **kwargs) as resp:
            self.count(attack, str(resp.status))
            return await resp.json(content_type=None) if resp.status < 300 else None

    async def conversation_id(self) -> None:
        """Raw bytes in X-Conversation-Id: no client library sends them, so write the request by hand."""
        host, port = self.url.removeprefix("http://").split(":")
        body = json.dumps({"model": "x", "messages": CHAT}).encode()
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n{self.auth_line()}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n").encode()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(head + b"X-Conversation-Id: conv-\xff\xfe\xc3\x28\r\n\r\n" + body)
        await writer.drain()
        status = (await reader.readline()).split(b" ")[1:2]
        self.count("conversation-id", status[0].decode() if status else "closed")
        writer.close()

    def auth_line(self) -> str:
        return f"Authorization: {self.headers['Authorization']}\r\n"

    async def huge_tokens(self) -> None:
        await self.post("huge-tokens", "/v1/chat/completions", json={"model": "x", "messages": CHAT},
                        headers={"X-LLM-Configuration": "hostile"})

    async def random_path(self) -> None:
        tail = "".join(random.choices(string.ascii_lowercase + "/", k=random.randint(3, 40)))
        async with self.http.get(f"{self.url}/v1/{tail}", headers=self.headers) as resp:
            self.count("random-path", str(resp.status))

    async def oversized(self) -> None:
        await self.post("oversized", "/v1/chat/completions", data=b"x" * (2 * 2**20),
                        headers={"Content-Type": "application/json"})

    async def placeholder(self) -> None:
        await self.post("placeholder", "/api/llm-configurations", json={
            "name": f"p-{uuid.uuid4().hex[:8]}", "provider": "openai", "model": "gpt-4o",
            "api_key": random.choice(["**********", "<hidden>", "sk-a...wxyz"])})

    async def move_key(self) -> None:
        """Save a key for the legitimate upstream, move the base URL to the attacker's host, press Test."""
        made = await self.post("move-key:create", "/api/llm-configurations", json={
            "name": f"m-{uuid.uuid4().hex[:8]}", "provider": "custom", "model": "gpt-4o-mini", "api_key": self.key,
            "base_url": self.legit_url})
        if made is None:
            return
        async with self.http.patch(f"{self.url}/api/llm-configurations/{made['id']}", headers=self.headers,
                                   json={"base_url": self.host_url}) as resp:
            self.count("move-key", str(resp.status))
        await self.post("move-key:test", f"/api/llm-configurations/{made['id']}/test")
        async with self.http.delete(f"{self.url}/api/llm-configurations/{made['id']}", headers=self.headers):
            pass

    def attacks(self, names: list[str]) -> list[Callable[[], Awaitable[None]]]:
        """The attacks named (ATTACKS' names)."""
        return [getattr(self, name.replace("-", "_")) for name in names]


async def at_rate(attack: Callable[[], Awaitable[None]], rate: float, until: float, errors: Counter[str]) -> None:
    """Run `attack` `rate` times a second until `until`; a failure of the attack itself is only counted."""
    next_at = time.monotonic()
    while next_at < until:
        try:
            await attack()
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            errors[f"{attack.__name__}: {exc.__class__.__name__}"] += 1
        next_at += 1 / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def accounted(http: aiohttp.ClientSession, url: str, token: str, expected: int, wait_s: float) -> int:
    """Requests the usage report counts for the normal user, once it reaches `expected` or `wait_s` passes."""
    deadline, seen = time.monotonic() + wait_s, -1
    while True:
        async with http.get(f"{url}/api/usage", headers={"Authorization": f"Bearer {token}"}) as resp:
            seen = int((await resp.json())["totals"]["requests"]) if resp.status == 200 else -1
        if seen >= expected or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.5)


async def drive(args: argparse.Namespace, gateway: Gateway, admin: str, key: str, upstream: str) -> dict[str, Any]:
    """Normal load and attacks side by side, sampling the gateway once a second."""
    host = AttackerHost()
    host_url = await host.start()
    normal = await setup(gateway.url, admin, key, upstream)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as http:
        async with http.post(f"{gateway.url}/api/admin/users", json={"name": "attacker"},
                             headers={"Authorization": f"Bearer {admin}"}) as resp:
            attacker = Attacker(http, gateway.url, (await resp.json())["token"], host_url, key)
        attacker.legit_url = upstream
        for name, url in (("legit", upstream), ("hostile", host_url)):  # the first is the default
            await attacker.post("setup", "/api/llm-configurations", json={
                "name": name, "provider": "custom", "model": "m", "api_key": f"sk-attacker-{uuid.uuid4().hex}",
                "base_url": url})
        headers = {"Authorization": f"Bearer {normal}"}
        tally, samples, attack_errors = Tally(), [], Counter[str]()
        started = time.monotonic()
        until = started + args.duration
        load = [asyncio.create_task(streamer(http, gateway.url, headers, tally, until)) for _ in range(args.clients)]
        load.append(asyncio.create_task(steady(http, gateway.url, headers, tally, until, args.rps)))
        load += [asyncio.create_task(at_rate(attack, args.attack_rps, until, attack_errors))
                 for attack in attacker.attacks(args.attacks)]
        while time.monotonic() < until:
            await asyncio.sleep(1.0)
            sample = await scrape(http, gateway.url)
            samples.append(sample | {"t": round(time.monotonic() - started, 1), "errors": tally.errors})
            print(json.dumps(samples[-1]), flush=True)
        await asyncio.gather(*load)
        succeeded = tally.streams + tally.plain
        counted = await accounted(http, gateway.url, normal, succeeded, args.usage_wait)
    await host.runner.cleanup()
    return {"tally": tally, "samples": samples, "succeeded": succeeded, "accounted": counted,
            "answers": {name: dict(c) for name, c in attacker.answers.items()}, "attack_errors": dict(attack_errors),
            "keys_at_attacker": sum(key in auth for auth in host.received)}


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    """The numbers and what failed."""
    samples = result["samples"]
    half = len(samples) // 2
    first, second = [s["rss_mb"] for s in samples[:half]] or [0.0], [s["rss_mb"] for s in samples[half:]] or [0.0]
    tally = result["tally"]
    summary = {
        "normal_ok": result["succeeded"], "normal_errors": tally.errors, "normal_error_kinds": tally.error_kinds,
        "normal_accounted_in_usage": result["accounted"],
        "rss_mb_first_half": [min(first), max(first)], "rss_mb_second_half": [min(second), max(second)],
        "attack_answers": result["answers"], "attack_errors": result["attack_errors"],
        "keys_at_attacker": result["keys_at_attacker"],
    }
    failures = []
    if tally.errors:
        failures.append("normal clients saw errors")
    if result["accounted"] != result["succeeded"]:
        failures.append(f"usage accounts for {result['accounted']} of {result['succeeded']} normal requests")
    if max(second) - min(first) > max(16.0, 0.1 * min(first)):
        failures.append("resident memory grew")
    if result["keys_at_attacker"]:
        failures.append("a stored key reached the attacker's host")
    summary["failures"] = failures
    summary["ok"] = not failures
    return summary


def main() -> int:
    parser = arguments(__doc__, clients=20)
    parser.add_argument("--attack-rps", type=float, default=3.0, help="requests per second of each attack")
    parser.add_argument("--usage-wait", type=float, default=30.0, help="seconds to wait for usage to catch up")
    parser.add_argument("--attacks", nargs="*", choices=ATTACKS, default=ATTACKS, help="which attacks (default all)")
    args = parser.parse_args()
    limits = {"LLM_GATEWAY_MAX_BODY_BYTES": str(2**20), "LLM_GATEWAY_TESTS_PER_MINUTE": "100000"}
    with stack("llmgw-hostile-", args.database_url, [], limits) as (gateway, admin, key, upstream):
        result = asyncio.run(drive(args, gateway, admin, key, upstream))
    summary = verdict(result)
    if key in gateway.log.read_text():
        summary["ok"] = False
        summary["failures"].append("the upstream key is in the gateway's log")
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({**summary, "samples": result["samples"]}, indent=1))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
