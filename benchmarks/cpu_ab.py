"""CPU µs per request of two gateway trees, measured alternately: the comparison a busy machine still allows.

    python -m benchmarks.cpu_ab BEFORE_SRC AFTER_SRC [--rounds 3] [--seconds 5] [--target sqlite]

Each round starts each tree in turn (fresh process, same fake upstream, same CPUs), warms it up, then counts the
gateway process's own CPU time (utime + stime) over one wrk run at 32 connections. Requests/s on a shared
machine swing with the neighbours; CPU time per request much less. Prints each round, the minima and medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from benchmarks import procs
from benchmarks.procs import MODEL
from benchmarks.run import Bench, parse_args


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs=2, type=Path, help="the src/ folders to compare: before, after")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--target", default="sqlite", choices=("sqlite", "postgres"))
    p.add_argument("--out", type=Path, default=Path("/tmp/llm-gateway-bench/cpu_ab"))
    ours = p.parse_args(argv)
    ours.out.mkdir(parents=True, exist_ok=True)
    args = parse_args(["--targets", ours.target, "--seconds", str(ours.seconds), "--out", str(ours.out)])
    bench = Bench(args)
    figures: dict[Path, list[float]] = {src: [] for src in ours.sources}
    with bench.upstream():
        for round_ in range(ours.rounds):
            for src in ours.sources:
                args.src = src
                with bench.target(ours.target, label=f"{ours.target}_{round_}") as (proc, port, token):
                    procs.wait_first_200(proc, port, token, MODEL)
                    bench.wrk(proc, port, token, 32, "warmup", seconds=2.0)
                    w = bench.wrk(proc, port, token, 32, "c32")
                figures[src].append(w.cpu_us_per_request)
                bench.log(f"round {round_ + 1} {src}: {w.cpu_us_per_request} CPU µs/request ({w.rps} req/s)")
    # Contention only ever adds CPU time (shared caches, a busy sibling thread): the minimum is the steadier figure.
    for label, pick in (("min", min), ("median", statistics.median)):
        before, after = (pick(figures[src]) for src in ours.sources)
        print(f"{label} CPU µs/request: before {before:.1f}, after {after:.1f} ({after - before:+.1f}, "
              f"{(after / before - 1) * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
