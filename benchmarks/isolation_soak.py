"""Isolation soak (issue 27): one user attacks what users share while two others work; the others must not notice.

    PYTHONPATH=src python benchmarks/isolation_soak.py                      # 20 s quiet, then 40 s under attack
    PYTHONPATH=src python benchmarks/isolation_soak.py --quiet 4 --attack 8 --json out.json   # the suite's smoke

A gateway subprocess (`serve`, SQLite, its translation worker), a fake OpenAI and a fake Anthropic upstream. Bob owns
a team "shared" with an OpenAI configuration and an Anthropic one (translated by litellm in the worker); Carol and
Mallory are members. Bob and Carol each keep a personal OpenAI configuration too. Bob and Carol send, in turn, a
personal plain request, a streamed team request and a translated team request, first alone (the quiet phase), then
while Mallory runs every attack below `--rate` times a second each:

- `image`: translated requests whose image URLs point at an image server that never answers and at a host whose name
  does not resolve;
- `huge`: 10 MB bodies to the translated and to the OpenAI team configuration;
- `malformed`: translated requests litellm cannot convert (`content: 123`), which must not cool the shared
  configuration down;
- `trickle`: a request body sent one byte a second;
- `form`: the routing fields (`api_base`, `api_key`) form-encoded and multipart, which must not reach an upstream.

Reports, per phase and per kind of the others' requests: count, errors, p50 and p99; Mallory's answers by status;
the gateway's resident memory (its own and its worker's); and what reached the upstreams from Mallory. Exit status 1
when one of the others' requests failed, an attack's routing field reached an upstream, or the others' p99 grew by
more than `--bound-ms` in the attack phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from gateway.crypto.keyring import generate_key_entry
from tests.fakes.anthropic_upstream import DEFAULT_ANTHROPIC_KEY, FakeAnthropic
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI
from tests.reliability.processes import Gateway

ADMIN = "isolation-soak-operator-token-0123456789"
KINDS = ("personal", "team-stream", "translated")
ATTACKS = ("image", "huge", "malformed", "trickle", "form")
HUGE = 10 * 1024 * 1024 - 4096  # just under the default MAX_BODY_BYTES (10 MiB) with the rest of the body
MODELS = ("gpt-4o-mini", "claude-3-5-haiku-20241022")


def percentile(values: list[float], share: float) -> float:
    """The share-th value of the sorted list (nearest rank); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (the translation workers), in MiB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for one in pids:
        status = Path(f"/proc/{one}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS"):
                    total += int(line.split()[1])
    return total / 1024


async def never_answers(request: web.Request) -> web.Response:
    """An image server that holds every request open."""
    await asyncio.sleep(3600)
    return web.Response(body=b"")


class Soak:
    """The gateway, its upstreams, its users and their clients for one run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.latency: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.errors: Counter[tuple[str, str]] = Counter()
        self.error_samples: list[str] = []
        self.attacks: Counter[str] = Counter()
        self.attack_samples: dict[str, str] = {}
        self.launched: Counter[str] = Counter()
        self.trickle_longest_s = 0.0
        self.rss: list[float] = []
        self.phase = "quiet"
        self.attack_end = 0.0
        self.pending: set[asyncio.Task[None]] = set()

    async def start(self, tmp: Path) -> None:
        """Upstreams, the gateway subprocess, users, the team and its configurations."""
        self.openai = await FakeOpenAI(record=True).start()
        self.anthropic = await FakeAnthropic(record=True).start()
        images = web.Application()
        images.router.add_get("/{tail:.*}", never_answers)
        self.images = web.AppRunner(images)
        await self.images.setup()
        site = web.TCPSite(self.images, "127.0.0.1", 0)
        await site.start()
        self.image_url = f"http://127.0.0.1:{self.images.addresses[0][1]}/cat.png"
        env = {"LLM_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/soak.db",
               "LLM_GATEWAY_ENCRYPTION_KEYS": generate_key_entry("soak1"), "LLM_GATEWAY_ADMIN_TOKEN": ADMIN,
               "LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS": "true", "LLM_GATEWAY_DATA_DIR": str(tmp),
               "LLM_GATEWAY_ACCESS_LOG": "true", "LLM_GATEWAY_BODY_READ_TIMEOUT_S": str(self.args.body_read_timeout)}
        self.gateway = await asyncio.to_thread(Gateway, env, tmp / "gateway.log")
        self.http = aiohttp.ClientSession(base_url=self.gateway.url, timeout=aiohttp.ClientTimeout(total=120))
        self.bob = await self.user("bob")
        self.carol = await self.user("carol")
        self.mallory = await self.user("mallory")
        for who in (self.bob, self.carol):
            await self.post(who, "/api/llm-configurations", {"name": "mine", "provider": "openai",
                            "model": "gpt-4o-mini", "api_key": DEFAULT_OPENAI_KEY, "base_url": self.openai.url})
        team = await self.post(self.bob, "/api/teams", {"name": "shared"})
        for member, name in ((self.carol, "carol"), (self.mallory, "mallory")):
            await self.join(team["id"], member, name)
        base = f"/api/teams/{team['id']}/llm-configurations"
        await self.post(self.bob, base, {"name": "gpt", "provider": "openai", "model": MODELS[0],
                                         "api_key": DEFAULT_OPENAI_KEY, "base_url": self.openai.url})
        await self.post(self.bob, base, {"name": "claude", "provider": "anthropic",
                                         "model": MODELS[1], "api_key": DEFAULT_ANTHROPIC_KEY,
                                         "base_url": self.anthropic.root_url})

    async def post(self, who: dict[str, str], path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JSON POST that must succeed."""
        async with self.http.post(path, json=body, headers=who) as resp:
            assert resp.status in (200, 201, 202), (path, resp.status, await resp.text())
            return await resp.json() if resp.content_length != 0 else {}

    async def user(self, name: str) -> dict[str, str]:
        """A user made by the operator; its auth headers."""
        made = await self.post({"Authorization": f"Bearer {ADMIN}"}, "/api/admin/users", {"name": name})
        return {"Authorization": f"Bearer {made['token']}"}

    async def join(self, team_id: str, member: dict[str, str], name: str) -> None:
        """Bob invites the member; the member accepts (membership needs the invitee's consent)."""
        await self.post(self.bob, f"/api/teams/{team_id}/members", {"user": name})
        async with self.http.get("/api/invitations", headers=member) as resp:
            if resp.status == 404:
                return  # a gateway from before invitations: the owner's add was the membership
            assert resp.status == 200, await resp.text()
            invitations = (await resp.json())["items"]
        for invitation in invitations:
            await self.post(member, f"/api/invitations/{invitation['id']}/accept", {})

    # -- the others' work ------------------------------------------------------------------------------------

    async def call(self, who: dict[str, str], kind: str) -> None:
        """One request of the given kind; its latency, or an error, counted under the current phase."""
        body: dict[str, Any] = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}
        body["model"] = {"personal": "mine", "team-stream": "shared/gpt", "translated": "shared/claude"}[kind]
        body["stream"] = kind == "team-stream"
        phase, started = self.phase, time.perf_counter()
        try:
            async with self.http.post("/v1/chat/completions", json=body, headers=who) as resp:
                data = await resp.read()
                ok = resp.status == 200 and (not body["stream"] or data.rstrip().endswith(b"data: [DONE]"))
        except (TimeoutError, aiohttp.ClientError) as exc:
            ok, data = False, repr(exc).encode()
        if ok:
            self.latency[(phase, kind)].append((time.perf_counter() - started) * 1000)
        else:
            self.errors[(phase, kind)] += 1
            if len(self.error_samples) < 10:
                self.error_samples.append(f"{phase} {kind}: {data[:300]!r}")

    async def worker(self, who: dict[str, str], until: float) -> None:
        """Requests of every kind in turn until the end."""
        n = 0
        while time.monotonic() < until:
            await self.call(who, KINDS[n % len(KINDS)])
            n += 1

    # -- Mallory ---------------------------------------------------------------------------------------------

    async def attack(self, kind: str) -> None:
        """One attack; its outcome counted as '<kind> <status>'."""
        headers, body, data = dict(self.mallory), None, None
        self.launched[kind] += 1
        odd = self.launched[kind] % 2
        chat: dict[str, Any] = {"model": "shared/claude", "max_tokens": 16}
        if kind == "image":
            url = self.image_url if odd else "http://images.does-not-resolve.invalid/cat.png"
            chat["messages"] = [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                                              {"type": "image_url", "image_url": {"url": url}}]}]
            body = chat
        elif kind == "huge":
            chat["model"] = "shared/claude" if odd else "shared/gpt"
            chat["messages"] = [{"role": "user", "content": "x" * HUGE}]
            body = chat
        elif kind == "malformed":
            chat["messages"] = [{"role": "user", "content": 123}]
            body = chat
        elif kind == "form":
            data = aiohttp.FormData({"model": "shared/gpt", "api_base": "http://attacker.example/v1",
                                     "api_key": "sk-attacker", "messages": '[{"role":"user","content":"hi"}]'})
            if odd:
                data.add_field("file", b"x", filename="x.txt")
        elif kind == "trickle":
            await self.trickle()
            return
        try:
            async with self.http.post("/v1/chat/completions", json=body, data=data, headers=headers) as resp:
                answer = await resp.read()
                self.attacks[f"{kind} {resp.status}"] += 1
                self.attack_samples.setdefault(f"{kind} {resp.status}", answer[:240].decode(errors="replace"))
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.attacks[f"{kind} {exc.__class__.__name__}"] += 1
        self.attacks[kind] += 1

    async def trickle(self) -> None:
        """A body promised at 1,000 bytes and sent one byte a second, until the gateway answers or the phase ends."""
        host, port = self.gateway.url.removeprefix("http://").split(":")
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write((f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n{_auth(self.mallory)}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n").encode())
        outcome = "still open"
        try:
            while time.monotonic() < self.attack_end:
                writer.write(b" ")
                await writer.drain()
                try:
                    answer = await asyncio.wait_for(reader.read(200), 1.0)
                except TimeoutError:
                    continue
                outcome = answer.split(b"\r\n", 1)[0].decode(errors="replace") if answer else "closed"
                break
        except OSError:
            outcome = "closed"
        finally:
            writer.close()
        self.attacks[f"trickle {outcome}"] += 1
        self.attacks["trickle"] += 1
        self.trickle_longest_s = max(self.trickle_longest_s, time.monotonic() - started)

    async def mallory_loop(self, until: float) -> None:
        """Every attack `--rate` times a second until the end (each in its own task; at most 50 open)."""
        gap = 1.0 / self.args.rate
        while time.monotonic() < until:
            for kind in ATTACKS:
                if len(self.pending) < 50:
                    task = asyncio.create_task(self.attack(kind))
                    self.pending.add(task)
                    task.add_done_callback(self.pending.discard)
            await asyncio.sleep(gap)

    async def memory_loop(self, until: float) -> None:
        """The gateway's resident memory, with its workers', every half second."""
        while time.monotonic() < until:
            self.rss.append(rss_mib(self.gateway.process.pid))
            await asyncio.sleep(0.5)

    # -- the run ---------------------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        """The quiet phase, then the attack phase; the summary."""
        for who in (self.bob, self.carol):  # the translation worker starts on first use: not part of either phase
            for kind in KINDS:
                await self.call(who, kind)
        self.latency.clear()
        self.errors.clear()
        self.error_samples.clear()
        quiet_end = time.monotonic() + self.args.quiet
        await asyncio.gather(*(self.worker(who, quiet_end) for who in (self.bob, self.carol) for _ in range(2)))
        rss_quiet = rss_mib(self.gateway.process.pid)
        self.phase = "attack"
        attack_end = self.attack_end = time.monotonic() + self.args.attack
        await asyncio.gather(self.mallory_loop(attack_end), self.memory_loop(attack_end),
                             *(self.worker(who, attack_end) for who in (self.bob, self.carol) for _ in range(2)))
        for task in list(self.pending):
            task.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)
        # Every request an upstream saw must be a checked JSON body carrying the configuration's own model.
        leaked = [r for r in self.openai.requests + self.anthropic.requests if r.model not in MODELS]
        return self.summary(rss_quiet, len(leaked))

    def summary(self, rss_quiet: float, leaked: int) -> dict[str, Any]:
        """Per phase and kind: count, errors, p50, p99; the p99 growth; attacks; memory; leaks."""
        rows: dict[str, dict[str, Any]] = {}
        for phase in ("quiet", "attack"):
            for kind in KINDS:
                values = self.latency[(phase, kind)]
                rows[f"{phase} {kind}"] = {"ok": len(values), "errors": self.errors[(phase, kind)],
                                           "p50_ms": round(percentile(values, 0.5), 1),
                                           "p99_ms": round(percentile(values, 0.99), 1)}
        growth = {kind: round(rows[f"attack {kind}"]["p99_ms"] - rows[f"quiet {kind}"]["p99_ms"], 1) for kind in KINDS}
        return {"rows": rows, "p99_growth_ms": growth, "errors": sum(self.errors.values()),
                "error_samples": self.error_samples, "attacks": dict(sorted(self.attacks.items())),
                "attack_answers": self.attack_samples, "trickle_longest_s": round(self.trickle_longest_s, 1),
                "rss_mib": {"quiet": round(rss_quiet), "attack_max": round(max(self.rss, default=0))},
                "routing_fields_upstream": leaked, "bound_ms": self.args.bound_ms}

    async def close(self) -> None:
        """Stop everything started."""
        await self.http.close()
        await asyncio.to_thread(self.gateway.stop)
        await self.images.cleanup()
        await self.openai.close()
        await self.anthropic.close()


def _auth(headers: dict[str, str]) -> str:
    return f"Authorization: {headers['Authorization']}"


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak; its summary."""
    with tempfile.TemporaryDirectory(prefix="llmgw-isolation-") as tmp:
        run = Soak(args)
        try:
            await run.start(Path(tmp))
            return await run.run()
        finally:
            await run.close()


def main(args: argparse.Namespace) -> int:
    """Run the soak, print (and write) the summary; 1 when the others noticed the attack."""
    summary = asyncio.run(soak(args))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    worst = max(summary["p99_growth_ms"].values())
    return int(summary["errors"] > 0 or summary["routing_fields_upstream"] > 0 or worst > args.bound_ms)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", type=float, default=20.0, help="seconds of the others' work alone")
    parser.add_argument("--attack", type=float, default=40.0, help="seconds of the others' work under attack")
    parser.add_argument("--rate", type=float, default=1.0, help="each attack, times a second")
    parser.add_argument("--bound-ms", type=float, default=250.0, help="the others' p99 may grow by at most this")
    parser.add_argument("--body-read-timeout", type=float, default=30.0,
                        help="the gateway's BODY_READ_TIMEOUT_S (the suite's short run lowers it to see the 408)")
    parser.add_argument("--json", help="also write the summary here")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main(parser.parse_args()))
