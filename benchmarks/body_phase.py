"""The /v1 body phase under hostile bodies (issue 27 item 6), against `llm-gateway serve` in its own process.

    python benchmarks/body_phase.py [--bodies 8] [--trickle-every 10]

1. Memory: user A sends `--bodies` bodies of just under MAX_BODY_BYTES at once, each a JSON list of empty
   objects (the shape that grows most when parsed: ~26x); prints the gateway's resident memory before and its
   peak (VmHWM), the time they took and their statuses.
2. Two users: while A sends those bodies again, user B sends small chat completions one after another;
   prints B's latencies (median, max).
3. Trickle: one body of 100 bytes sent one byte every `--trickle-every` s; prints what was answered and
   after how long the gateway closed the connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from gateway.crypto.keyring import generate_key_entry
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY, FakeOpenAI
from tests.reliability.processes import Gateway

ADMIN = "bench-operator-" + uuid.uuid4().hex
MAX_BODY = 10 * 1024 * 1024  # MAX_BODY_BYTES' default


def status_kib(pid: int, field: str) -> int:
    """A VmRSS/VmHWM line of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def hostile_body() -> bytes:
    """Just under MAX_BODY_BYTES of JSON whose parsed form is ~26 times its size."""
    head, tail = b'{"model":"c","messages":[{"role":"user","content":"hi"}],"metadata":[', b"{}]}"
    count = (MAX_BODY - len(head) - len(tail) - 64) // 3
    return head + b"{}," * count + tail


async def user(http: aiohttp.ClientSession, name: str, base_url: str) -> dict[str, str]:
    """A user with one configuration on the fake; their auth headers."""
    async with http.post("/api/admin/users", json={"name": name},
                         headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        made = await resp.json()
    headers = {"Authorization": f"Bearer {made['token']}"}
    body = {"name": "c", "provider": "custom", "model": "gpt-4o-mini", "base_url": base_url,
            "api_key": DEFAULT_OPENAI_KEY}
    async with http.post("/api/llm-configurations", json=body, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
    return headers


async def send_all(http: aiohttp.ClientSession, headers: dict[str, str], body: bytes, n: int) -> Counter[int]:
    """N hostile bodies at once; their statuses."""
    async def one() -> int:
        async with http.post("/v1/chat/completions", data=body,
                             headers={**headers, "Content-Type": "application/json"}) as resp:
            await resp.read()
            return resp.status
    return Counter(await asyncio.gather(*(one() for _ in range(n))))


async def small_requests(http: aiohttp.ClientSession, headers: dict[str, str], stop: asyncio.Event
                         ) -> list[float]:
    """B's chat completions one after another until `stop`; each one's latency in ms."""
    latencies = []
    body = {"model": "c", "messages": [{"role": "user", "content": "hi"}]}
    while not stop.is_set():
        started = time.perf_counter()
        async with http.post("/v1/chat/completions", json=body, headers=headers) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def trickle(port: int, token: str, every_s: float) -> str:
    """A 100-byte body one byte every `every_s`: what came back, and when the connection closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode())
    started = time.monotonic()
    answer = b""

    async def drip() -> None:
        try:
            for _ in range(100):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(every_s)
        except ConnectionError:
            return

    dripping = asyncio.create_task(drip())
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 600):
            if not answer:
                first_at = time.monotonic() - started
            answer += chunk
    except (ConnectionError, TimeoutError):
        pass
    closed_at = time.monotonic() - started
    dripping.cancel()
    writer.close()
    status = answer.split(b"\r\n", 1)[0].decode() if answer else "nothing"
    return f"{status!r} after {first_at if answer else closed_at:.1f} s, connection closed after {closed_at:.1f} s"


async def serve_fake() -> None:
    """The fake upstream, in a process of its own (parsing the bodies it gets must not stall the clients)."""
    fake = await FakeOpenAI(record=False).start()
    print(fake.url, flush=True)
    await asyncio.Event().wait()


def peak_kib(pid: int) -> tuple[int, int]:
    """VmHWM of a process and the sum of its children's (the body parser), in KiB."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return status_kib(pid, "VmHWM"), sum(status_kib(int(child), "VmHWM") for child in children)


async def main(bodies: int, every_s: float, env: dict[str, str]) -> None:
    """The three measurements; see the module docstring."""
    # One fake upstream per user: the fake parses A's bodies too, which must not stall B's answers there.
    fakes = [subprocess.Popen([sys.executable, __file__, "--fake"], stdout=subprocess.PIPE, text=True, cwd=ROOT)  # noqa: ASYNC220
             for _ in range(2)]
    a_url, b_url = (fake.stdout.readline().strip() for fake in fakes if fake.stdout is not None)
    with tempfile.TemporaryDirectory() as tmp:
        url, keys = f"sqlite+aiosqlite:///{tmp}/gateway.db", generate_key_entry()
        base = {**os.environ, "LLM_GATEWAY_DATABASE_URL": url, "LLM_GATEWAY_ENCRYPTION_KEYS": keys}
        subprocess.run([sys.executable, "-m", "gateway", "db", "upgrade"], check=True, capture_output=True,  # noqa: ASYNC221
                       env=base, cwd=ROOT)
        gateway = Gateway({"LLM_GATEWAY_DATABASE_URL": url, "LLM_GATEWAY_ENCRYPTION_KEYS": keys,
                           "LLM_GATEWAY_ADMIN_TOKEN": ADMIN, "LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS": "true",
                           "LLM_GATEWAY_ACCESS_LOG": "false", **env}, Path(tmp) / "gateway.log")
        pid = gateway.process.pid
        try:
            async with aiohttp.ClientSession(base_url=gateway.url,
                                             timeout=aiohttp.ClientTimeout(total=600)) as http:
                a, b = await user(http, "a", a_url), await user(http, "b", b_url)
                await small_requests_once(http, b)
                body = hostile_body()
                rss = status_kib(pid, "VmRSS")
                started = time.perf_counter()
                statuses = await send_all(http, a, body, bodies)
                took = time.perf_counter() - started
                peak, children = peak_kib(pid)
                print(f"memory: {bodies} bodies of {len(body) / 2**20:.1f} MiB from one user: RSS before "
                      f"{rss / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB (+ child processes' peak "
                      f"{children / 1024:.0f} MiB), {took:.2f} s, statuses {dict(statuses)}", flush=True)
                stop = asyncio.Event()
                b_task = asyncio.create_task(small_requests(http, b, stop))
                await asyncio.sleep(0.5)
                statuses = await send_all(http, a, body, bodies)
                stop.set()
                latencies = await b_task
                print(f"two users: B's {len(latencies)} requests while A's {bodies} bodies were sent: median "
                      f"{statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms (A: {dict(statuses)})",
                      flush=True)
                token = b["Authorization"].split()[1]
                print("trickle: " + await trickle(gateway.port, token, every_s), flush=True)
        finally:
            gateway.stop()
            for fake in fakes:
                fake.terminate()
                fake.wait(10)


async def small_requests_once(http: aiohttp.ClientSession, headers: dict[str, str]) -> None:
    """One request, so imports and caches are warm before memory is read."""
    async with http.post("/v1/chat/completions", headers=headers,
                         json={"model": "c", "messages": [{"role": "user", "content": "hi"}]}) as resp:
        assert resp.status == 200, await resp.text()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bodies", type=int, default=8)
    parser.add_argument("--trickle-every", type=float, default=10.0)
    parser.add_argument("--env", action="append", default=[], help="LLM_GATEWAY_X=value for the gateway")
    parser.add_argument("--fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake:
        asyncio.run(serve_fake())
    asyncio.run(main(args.bodies, args.trickle_every, dict(e.split("=", 1) for e in args.env)))
