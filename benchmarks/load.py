"""Load on a target: wrk (Debian's, closed loop, one thread) for non-streamed requests, the stream probe for TTFC."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
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


def wrk(port: int, token: str, model: str, *, conns: int, seconds: float, cpus: str | None, out: Path,
        requests: int | None = None, watch_pid: int | None = None) -> dict[str, object]:
    """One wrk run; its JSON plus the busy % of every CPU and the CPU the watched process used."""
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
    result: dict[str, object] = json.loads(out.read_text())
    result["busy_pct"] = procs.busy_pct(before, after)
    if watch_pid:
        result["target_cpu_s"] = round(cpu1 - cpu0, 3)
    return result


def stream_ttfc(port: int, token: str, model: str, *, requests: int, cpus: str | None, out: Path) -> dict[str, object]:
    """Median and p90 time to first chunk over REQUESTS sequential streams."""
    cmd = [sys.executable, "-m", "benchmarks.stream_probe", "--port", str(port), "--model", model, "--requests", str(requests), "--out", str(out)]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    subprocess.run(cmd, check=True, cwd=HERE.parent, timeout=600, env=dict(os.environ, BENCH_TOKEN=token))
    result: dict[str, object] = json.loads(out.read_text())
    return result


def wrk_version() -> str:
    """wrk's version line (it prints it on -v, with a non-zero exit)."""
    done = subprocess.run([require_wrk(), "-v"], capture_output=True, text=True)
    return (done.stdout or done.stderr).split(" [", 1)[0].replace("wrk ", "").strip()
