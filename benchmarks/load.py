"""Load on a target: wrk (Debian's, closed loop, one thread) for non-streamed requests, the stream probe for TTFC."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import procs

HERE = Path(__file__).resolve().parent
LUA = HERE / "chat.lua"


def require_wrk() -> str:
    """The wrk binary, or SystemExit saying how to get it."""
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("benchmarks need wrk: apt-get install -y wrk")
    return path


@dataclass
class WrkResult:
    """One wrk run, as chat.lua reports it, plus each CPU's busy % and the watched process's CPU seconds."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int
    busy_pct: dict[str, float] = field(default_factory=dict)
    target_cpu_s: float = 0.0

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors

    @property
    def cpu_us_per_request(self) -> float:
        return round(1e6 * self.target_cpu_s / max(1, self.requests), 1)


def wrk(port: int, token: str, model: str, *, conns: int, seconds: float, cpus: str | None, out: Path,
        requests: int | None = None, watch_pid: int | None = None) -> WrkResult:
    """One wrk run from CPUS against 127.0.0.1:PORT; with REQUESTS, it ends after that many responses."""
    env = dict(os.environ, BENCH_TOKEN=token, BENCH_MODEL=model, BENCH_OUT=str(out))
    env.pop("BENCH_REQUESTS", None)
    if requests:
        env["BENCH_REQUESTS"] = str(requests)
    cmd = [require_wrk(), "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(LUA),
           f"http://127.0.0.1:{port}"]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    stopped = Path(f"{out}.stopped")
    stopped.unlink(missing_ok=True)
    before, cpu0 = procs.cpu_busy(), procs.cpu_seconds(watch_pid) if watch_pid else 0.0
    with subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL) as run:
        deadline = time.monotonic() + seconds + 60
        while run.poll() is None:
            if stopped.exists():
                run.send_signal(signal.SIGINT)  # wrk stops sleeping out -d and reports
                stopped.unlink()
            elif time.monotonic() > deadline:
                run.kill()
            time.sleep(0.05)
    if run.returncode:
        raise RuntimeError(f"wrk exited with {run.returncode}")
    after, cpu1 = procs.cpu_busy(), procs.cpu_seconds(watch_pid) if watch_pid else 0.0
    return WrkResult(**json.loads(out.read_text()), busy_pct=procs.busy_pct(before, after),
                     target_cpu_s=round(cpu1 - cpu0, 3))


def stream_ttfc(port: int, token: str, model: str, *, requests: int, cpus: str | None, out: Path) -> dict[str, object]:
    """Median and p90 time to first chunk over REQUESTS sequential streams."""
    cmd = [sys.executable, "-m", "benchmarks.stream_probe", "--port", str(port), "--model", model,
           "--requests", str(requests), "--out", str(out)]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    subprocess.run(cmd, check=True, cwd=HERE.parent, timeout=600, env=dict(os.environ, BENCH_TOKEN=token))
    result: dict[str, object] = json.loads(out.read_text())
    return result


def wrk_version() -> str:
    """wrk's version line (it prints it on -v, with a non-zero exit)."""
    done = subprocess.run([require_wrk(), "-v"], capture_output=True, text=True)
    return (done.stdout or done.stderr).split(" [", 1)[0].replace("wrk ", "").strip()
