"""Where the gateway's CPU goes: py-spy samples it from outside while wrk loads it; top frames, µs per request."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks import load


def py_spy() -> str:
    """The py-spy binary next to this interpreter or on PATH, or SystemExit saying how to get it."""
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return found


def record(pid: int, port: int, token: str, model: str, *, seconds: float, conns: int, cpus: str | None,
           out_dir: Path, name: str) -> list[str]:
    """Sample PID (and its workers) for SECONDS under load; collapsed stacks to out_dir/NAME.folded; tables."""
    folded = out_dir / f"{name}.folded"
    cmd = [py_spy(), "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", "250",
           "--format", "raw", "--output", str(folded), "--duration", str(round(seconds) + 2)]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy attaches before the load starts
    result = load.wrk(port, token, model, conns=conns, seconds=seconds, cpus=cpus,
                      out=out_dir / f"{name}.wrk.json", watch_pid=pid)
    _, err = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not folded.exists():
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    return summarize(folded, requests=result.requests, cpu_s=result.target_cpu_s)


# Frames every sample of a thread shares (interpreter start, the CLI, the event loop's entry): cut off, so the
# inclusive table starts at the callbacks the loop runs. A sample with nothing left was in the loop's C code.
ROOTS = ("run_app (aiohttp/web.py", "run_until_complete (", "run_forever (", "_run_once (", "Runner.run (",
         "Thread._bootstrap_inner (", "Thread.run (")
LOOP = "[event loop, C code: uvloop, sockets, parsers]"


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; keep the function and its file.
    func, _, where = frame.partition(" (")
    return f"{func} ({where.rstrip(')').rsplit(':', 1)[0]})"


def _package(frame: str) -> str:
    where = frame.rpartition(" (")[2].rstrip(")")
    if frame == LOOP:
        return "event loop (C)"
    top = where.split("/", 1)[0] if "/" in where else where.removesuffix(".py")
    return top if top in ("gateway", "admin", "aiohttp", "sqlalchemy", "aiosqlite", "asyncpg", "prometheus_client",
                          "cryptography", "pydantic", "multidict", "yarl", "orjson") else f"stdlib/other ({top})"


def _frames(stack: str) -> list[str]:
    frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
    cut = max((i for i, f in enumerate(frames) if f.startswith(ROOTS)), default=-1)
    return [_frame_name(f) for f in frames[cut + 1:]] or [LOOP]


def summarize(folded: Path, *, requests: int, cpu_s: float, top: int = 25) -> list[str]:
    """Markdown tables: self time by package, top functions by self and inclusive samples, µs per request."""
    self_n: Counter[str] = Counter()
    incl_n: Counter[str] = Counter()
    pkg_n: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        total += n
        self_n[frames[-1]] += n
        pkg_n[_package(frames[-1])] += n
        for f in set(frames):
            incl_n[f] += n
    if not total or not requests:
        return ["(no samples)"]
    us_per_req = cpu_s / requests * 1e6
    lines = [f"{total} samples; gateway CPU {cpu_s:.2f} s for {requests} requests = {us_per_req:.0f} µs/request "
             "(µs columns share that out by samples)", ""]
    tables = (("self time by package", pkg_n, 12), ("self time", self_n, top), ("inclusive time", incl_n, top))
    for title, counter, limit in tables:
        lines += [f"| top by {title} | % | µs/request |", "|---|---:|---:|"]
        for fname, n in counter.most_common(limit):
            lines.append(f"| `{fname}` | {100 * n / total:.1f} | {us_per_req * n / total:.1f} |")
        lines.append("")
    return lines
