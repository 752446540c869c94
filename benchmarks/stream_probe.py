"""Time to first chunk of streamed chat completions, one request at a time over one keep-alive connection.

    BENCH_TOKEN=T python -m benchmarks.stream_probe --port N --model M --requests 100 --out result.json

TTFC is the time from sending the request to reading the first SSE `data:` event; each stream is read to
`data: [DONE]`, and a stream that misses it (or any non-200) counts as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

import aiohttp

from benchmarks.procs import chat_body, install_uvloop


async def one(session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes) -> float | None:
    """TTFC in ms, or None when the stream failed."""
    t0 = time.perf_counter()
    ttfc = None
    tail = b""
    async with session.post(url, data=body, headers=headers) as resp:
        if resp.status != 200:
            await resp.read()
            return None
        async for piece in resp.content.iter_any():
            if ttfc is None and b"data:" in piece:
                ttfc = (time.perf_counter() - t0) * 1000
            tail = (tail + piece)[-64:]
    return ttfc if b"data: [DONE]" in tail else None


async def probe(port: int, token: str, model: str, requests: int) -> dict[str, float | int]:
    """Warm up, then time REQUESTS streams one after another."""
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = chat_body(model, stream=True)
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        for _ in range(5):
            await one(session, url, headers, body)
        times = [await one(session, url, headers, body) for _ in range(requests)]
    ok = sorted(t for t in times if t is not None)
    if not ok:
        return {"requests": requests, "errors": requests}
    return {
        "requests": requests,
        "errors": requests - len(ok),
        "ttfc_p50_ms": round(statistics.median(ok), 3),
        "ttfc_p90_ms": round(ok[int(0.9 * (len(ok) - 1))], 3),
    }


def main() -> None:
    """Run the probe and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    install_uvloop()
    result = asyncio.run(probe(args.port, os.environ["BENCH_TOKEN"], args.model, args.requests))
    with open(args.out, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
