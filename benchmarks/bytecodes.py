"""Bytecodes executed per request, by Python function: where the gateway's own Python goes, exactly.

    python -m benchmarks.bytecodes SRC [SRC] [--requests 300] [--target sqlite] [--top 60]

The gateway (or the floor, `--target bare`) runs under a tracer that counts every bytecode its Python threads
execute, by code object, and how often each was entered (calls and coroutine resumptions), between two signals
sent around REQUESTS chat completions at one connection. One tree: the top functions per request. Two trees:
the functions whose counts differ most, B − A. Counts repeat exactly for the same tree, apart from timers (the
change-log poll, the usage flusher) that run by the clock: the tracer slows the process ~50×, so they weigh more
than at real rates. Bytecodes are not instructions (C work such as orjson, SQLite or header parsing is not
seen, and a bytecode costs 30–300 instructions): rank with this, measure with `benchmarks.icount`.
"""

from __future__ import annotations

import argparse
import collections
import os
import runpy
import signal
import sys
import threading
import time
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

SITE = ("site-packages/", "lib/python3.")


def trace_main(argv: list[str]) -> None:
    """In the measured process: run `python [-X opt] -m MODULE ARGS` under the tracer; SIGUSR1 starts counting
    (from zero), SIGUSR2 stops and writes the counts to $BYTECODES_OUT. The harness's command line follows
    `--trace`, its interpreter first: this one runs the module instead."""
    if argv and not argv[0].startswith("-"):
        argv = argv[1:]
    while argv and argv[0] == "-X":
        argv = argv[2:]
    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit("usage: bytecodes.py --trace [-X opt] -m MODULE [ARGS]")
    module, rest = argv[1], argv[2:]
    counts: collections.Counter[CodeType] = collections.Counter()
    entries: collections.Counter[CodeType] = collections.Counter()
    on = [False]

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode" and on[0]:
            counts[frame.f_code] += 1
        return local

    def entered(frame: FrameType, event: str, arg: Any) -> Any:
        if on[0]:
            entries[frame.f_code] += 1
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return local

    def start(*_: Any) -> None:
        counts.clear()
        entries.clear()
        on[0] = True

    def stop(*_: Any) -> None:
        on[0] = False
        with open(os.environ["BYTECODES_OUT"], "w") as out:
            for code, n in counts.most_common():
                out.write(f"{n}\t{entries[code]}\t{code.co_filename}:{code.co_firstlineno}:{code.co_qualname}\n")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.settrace(entered)
    threading.settrace(entered)
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _name(where: str) -> str:
    for marker in SITE:
        if marker in where:
            where = where.split(marker, 1)[1]
            return where.split("/", 1)[1] if marker.startswith("lib/") else where
    return where.split("/src/", 1)[-1]


def load(path: Path, requests: int) -> dict[str, tuple[float, float]]:
    """(bytecodes, entries) per request by function."""
    found: dict[str, tuple[float, float]] = {}
    for line in path.read_text().splitlines():
        n, entered, where = line.split("\t", 2)
        old = found.get(_name(where), (0.0, 0.0))
        found[_name(where)] = (old[0] + int(n) / requests, old[1] + int(entered) / requests)
    return found


def measure(src: Path, target: str, requests: int, out: Path) -> Path:
    """Run the tree under the tracer; the counts' file."""
    from benchmarks import procs
    from benchmarks.icount import drive
    from benchmarks.procs import MODEL
    from benchmarks.run import Bench, parse_args

    counts = out / f"bytecodes.{target}.{len(list(out.glob('bytecodes.*')))}.tsv"
    os.environ["BYTECODES_OUT"] = str(counts)
    bench = Bench(parse_args(["--targets", target, "--out", str(out)]))
    bench.args.src = src
    with bench.upstream():
        bench.wrap = [sys.executable, str(Path(__file__).resolve()), "--trace"]
        with bench.target(target, label=f"bytecodes-{target}") as (proc, port, token):
            procs.wait_first_200(proc, port, token, MODEL, timeout=300)
            drive(port, token, 100)
            time.sleep(1.5)  # the warm-up's usage rows are written before counting starts
            os.kill(proc.pid, signal.SIGUSR1)
            drive(port, token, requests)
            time.sleep(1.5)  # ... and the counted requests' rows before it stops
            os.kill(proc.pid, signal.SIGUSR2)
            for _ in range(100):
                time.sleep(0.2)
                if counts.exists() and counts.stat().st_size:
                    time.sleep(0.5)
                    return counts
    raise RuntimeError("the tracer wrote no counts")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--trace"]:
        trace_main(argv[1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", type=Path, help="one or two src/ folders")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--target", default="sqlite", choices=("sqlite", "postgres", "bare"))
    p.add_argument("--top", type=int, default=60)
    p.add_argument("--out", type=Path, default=Path("/tmp/llm-gateway-bench/bytecodes"))
    ours = p.parse_args(argv)
    if len(ours.sources) > 2:
        p.error("one tree, or two to compare")
    ours.out.mkdir(parents=True, exist_ok=True)
    runs = [load(measure(src, ours.target, ours.requests, ours.out), ours.requests) for src in ours.sources]
    for src, run in zip(ours.sources, runs, strict=True):
        print(f"{src}: {sum(b for b, _ in run.values()):,.0f} bytecodes, "
              f"{sum(e for _, e in run.values()):,.0f} entries per request")
    if len(runs) == 1:
        for name, (n, entered) in sorted(runs[0].items(), key=lambda kv: -kv[1][0])[:ours.top]:
            print(f"{n:9.1f} {entered:6.1f}  {name}")
        return 0
    a, b = runs
    names = sorted(set(a) | set(b), key=lambda k: -abs(b.get(k, (0, 0))[0] - a.get(k, (0, 0))[0]))
    for name in names[:ours.top]:
        before, after = a.get(name, (0.0, 0.0))[0], b.get(name, (0.0, 0.0))[0]
        print(f"{after - before:+9.1f} {before:9.1f} {after:9.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
