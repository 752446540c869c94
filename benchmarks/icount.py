"""Instructions per request of one or more gateway trees, counted by valgrind (callgrind): the comparison a busy
machine cannot spoil.

    python -m benchmarks.icount SRC [SRC ...] [--requests 600] [--warmup 200] [--target sqlite] [--idle 10]
                                [--connections 1]

Each tree is started under callgrind against the same fake upstream, warmed up, its counters zeroed, then
sent REQUESTS chat completions one at a time (the benchmark's body and configuration); the instructions all its
threads executed in that window, divided by REQUESTS, are printed, then the same less what the process does
idle in as long (measured for IDLE seconds after): timers that run a few times a second weigh ~15 % of a
request at valgrind's ~30 requests/s and nothing at real rates, so the second figure is the one to compare with
the floor (`--target bare`) and between trees. Time per request also depends on caches and
branch prediction, which instruction counts ignore, and the loop does more per request at one connection than
at 32 (no batching): use it to rank changes to the gateway's own work, and `make bench` for the figures.
Needs valgrind (apt-get install valgrind); a run takes about a minute per tree. The same tree repeats to about
0.2 % within one run, ~1 % between runs (one hash seed for all: PYTHONHASHSEED=0 unless set): compare trees in
one run. With `--connections 32` (the targets' load: batched usage rows, several requests per loop wake-up) it
repeats to ~2 %: rank changes at one connection, read the ratio to the floor at 32.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import procs
from benchmarks.procs import MODEL
from benchmarks.run import Bench, parse_args


def drive(port: int, token: str, count: int, connections: int = 1) -> None:
    """COUNT chat completions over CONNECTIONS keep-alive connections at once (a thread each, one request at a
    time on each); each must answer 200."""
    if connections > 1:
        shares = [count // connections + (i < count % connections) for i in range(connections)]
        with ThreadPoolExecutor(connections) as pool:
            for done in [pool.submit(drive, port, token, share) for share in shares]:
                done.result()
        return
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    body = procs.chat_body(MODEL)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for _ in range(count):
        conn.request("POST", "/v1/chat/completions", body, headers)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}")
    conn.close()


def instructions(out: Path) -> int:
    """The total of a callgrind dump: `summary:` or `totals:` (instructions, the first event)."""
    text = out.read_text()
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no totals in {out}")
    return int(found.group(1))


def _dump(bench: Bench, proc: procs.Proc, label: str) -> int:
    """Dump the counters since the last zeroing; their instruction total."""
    dumps = set(bench.out.glob(f"callgrind.{label}.*"))
    subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
    for _ in range(100):
        new = set(bench.out.glob(f"callgrind.{label}.*")) - dumps
        if new:
            time.sleep(0.5)
            return instructions(max(new, key=lambda p: p.stat().st_mtime))
        time.sleep(0.2)
    raise RuntimeError("callgrind wrote no dump")


def count(bench: Bench, src: Path, *, warmup: int, requests: int, label: str, idle_s: float,
          connections: int = 1) -> tuple[float, float]:
    """Instructions per request of the tree at src: all of them, and less what the process does idle in as long
    (its timers: the change-log poll, the flusher's wake-ups). Under valgrind a request takes ~30 ms, so work
    done a few times a second weighs ~15 % of the first figure, and nothing at the real ~1,700 requests/s."""
    bench.args.src = src
    with bench.target(bench.args.targets[0], label=label) as (proc, port, token):
        procs.wait_first_200(proc, port, token, MODEL, timeout=300)
        drive(port, token, warmup, connections)
        time.sleep(1.5)  # the usage flusher writes the warm-up's rows outside the counted window
        subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, capture_output=True)
        started = time.monotonic()
        drive(port, token, requests, connections)
        time.sleep(1.5)  # ... and the counted requests' rows inside it
        window = time.monotonic() - started
        total = _dump(bench, proc, label)
        subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, capture_output=True)
        started = time.monotonic()
        time.sleep(idle_s)
        idle = _dump(bench, proc, label) / (time.monotonic() - started)
    return total / requests, (total - idle * window) / requests


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", type=Path, help="src/ folders to count")
    p.add_argument("--requests", type=int, default=600)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--target", default="sqlite", choices=("sqlite", "postgres", "bare"))
    p.add_argument("--idle", type=float, default=10.0, help="seconds of idle counting after the requests")
    p.add_argument("--connections", type=int, default=1,
                   help="requests at once (the targets are at 32: batching and the loop's work per wake-up differ)")
    p.add_argument("--out", type=Path, default=Path("/tmp/llm-gateway-bench/icount"))
    ours = p.parse_args(argv)
    # One hash seed for every tree: with a random one, dicts' and sets' probe sequences differ from run to run,
    # which moved the same tree's count by 1-2 %; with one seed it repeats to 0.2 % within a run.
    os.environ.setdefault("PYTHONHASHSEED", "0")
    if shutil.which("valgrind") is None:
        raise SystemExit("icount needs valgrind: apt-get install valgrind")
    ours.out.mkdir(parents=True, exist_ok=True)
    args = parse_args(["--targets", ours.target, "--out", str(ours.out)])
    bench = Bench(args)
    figures = []
    with bench.upstream():
        for n, src in enumerate(ours.sources):
            label = f"tree{n}"
            bench.wrap = ["valgrind", "--tool=callgrind", "--trace-children=no",
                          f"--callgrind-out-file={ours.out}/callgrind.{label}.%p"]
            per_request, busy = count(bench, src, warmup=ours.warmup, requests=ours.requests, label=label,
                                      idle_s=ours.idle, connections=ours.connections)
            figures.append(busy)
            print(f"{src}: {per_request:,.0f} instructions/request, {busy:,.0f} less the idle process's",
                  flush=True)
    base = figures[0]
    for src, figure in zip(ours.sources[1:], figures[1:], strict=True):
        print(f"{src} vs {ours.sources[0]} (less idle): {figure - base:+,.0f} ({(figure / base - 1) * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
