"""Translated (Anthropic) requests through `gateway serve` against the fake Anthropic upstream: the first one
(which starts the translation worker, or imports litellm in a tree from before it), then N one at a time on one
keep-alive connection (latency p50/p90, and CPU ms per request of the gateway's process tree, worker
included: the figure a busy machine bends least), then streams (time to the first content event), and the RSS of the
gateway's process and of its translation worker. Run it on this tree and on another one's src/ for before/after:

    python -m benchmarks.translation_latency [--src OTHER/src] [--requests 200] [--streams 50]

The gateway (and so its worker) runs on --gateway-cpus, the fake upstream on --load-cpus; prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import procs
from benchmarks.run import REPO, clean_env


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def main(argv: list[str] | None = None) -> None:
    """Measure and print."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, default=REPO / "src")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--streams", type=int, default=50)
    p.add_argument("--gateway-cpus", default="0")
    p.add_argument("--load-cpus", default="1")
    args = p.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="llmgw-translation-bench-"))
    key = "sk-ant-bench-" + secrets.token_hex(12)
    anthropic_port, port = procs.free_port(), procs.free_port()
    env = clean_env(PYTHONPATH=f"{REPO}:{REPO / 'src'}")
    claude = procs.start("anthropic", [sys.executable, "-m", "tests.fakes.anthropic_upstream", "--port",
                                       str(anthropic_port), "--key", key], cpus=args.load_cpus, log_dir=out, cwd=REPO,
                         env=env)
    gateway = None
    try:
        _wait_listening(anthropic_port)
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.prepare", "sqlite", str(out)], cwd=REPO, capture_output=True,
            text=True, timeout=120, check=True,
            env=clean_env(PYTHONPATH=f"{args.src}:{REPO}", BENCH_UPSTREAM_URL="http://127.0.0.1:9/v1",
                          BENCH_UPSTREAM_KEY="sk-unused-" + secrets.token_hex(8),
                          BENCH_ANTHROPIC_URL=f"http://127.0.0.1:{anthropic_port}", BENCH_ANTHROPIC_KEY=key))
        prepared = json.loads(done.stdout)
        token = prepared["token"]
        gateway = procs.start("gateway", [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port",
                                          str(port)], cpus=args.gateway_cpus, log_dir=out, cwd=out,
                              env=clean_env(PYTHONPATH=str(args.src), LLM_GATEWAY_DATABASE_URL=prepared["database_url"],
                                            LLM_GATEWAY_ENCRYPTION_KEYS=prepared["encryption_keys"],
                                            LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS="true",
                                            LLM_GATEWAY_ACCESS_LOG="false", LLM_GATEWAY_LOG_LEVEL="WARNING",
                                            LLM_GATEWAY_DATA_DIR=str(out)))
        _wait_listening(port)
        rss_before = procs.rss_kib(gateway.pid) / 1024
        started = time.perf_counter()
        status = procs.post_status(port, token, procs.TRANSLATED_MODEL, timeout=120)
        first_s = time.perf_counter() - started
        assert status == 200, f"first translated request: HTTP {status}\n{gateway.tail()}"
        workers = procs.translation_workers(gateway.pid)
        rss_gateway = procs.rss_kib(gateway.pid, without=workers) / 1024
        rss_worker = sum(procs.rss_kib(w) for w in workers) / 1024
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        whole, body = [], procs.chat_body(procs.TRANSLATED_MODEL)
        cpu_before = procs.cpu_seconds(gateway.pid)  # the gateway's process tree: its worker included
        for _ in range(args.requests):
            started = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            whole.append(time.perf_counter() - started)
            assert resp.status == 200, resp.status
        cpu_ms = 1000 * (procs.cpu_seconds(gateway.pid) - cpu_before) / args.requests
        first_event, streamed = [], procs.chat_body(procs.TRANSLATED_MODEL, stream=True)
        for _ in range(args.streams):
            started = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", body=streamed, headers=headers)
            resp = conn.getresponse()
            while b'"content"' not in (line := resp.readline()):
                assert line, "stream ended before its first content event"
            first_event.append(time.perf_counter() - started)
            resp.read()
        conn.close()
        print(json.dumps({
            "src": str(args.src), "load_average": procs.load_average(),
            "rss_gateway_before_mib": round(rss_before, 1), "first_translated_s": round(first_s, 2),
            "rss_gateway_after_mib": round(rss_gateway, 1), "rss_worker_mib": round(rss_worker, 1),
            "worker_processes": len(workers),
            "whole_p50_ms": _ms(whole, 0.5), "whole_p90_ms": _ms(whole, 0.9),
            "whole_mean_ms": round(1000 * statistics.fmean(whole), 2), "whole_cpu_ms_per_request": round(cpu_ms, 2),
            "stream_first_content_p50_ms": _ms(first_event, 0.5), "stream_first_content_p90_ms": _ms(first_event, 0.9),
            "rss_gateway_end_mib": round(procs.rss_kib(gateway.pid, without=workers) / 1024, 1),
        }, indent=1))
    finally:
        if gateway is not None:
            gateway.stop()
        claude.stop()


if __name__ == "__main__":
    main()
