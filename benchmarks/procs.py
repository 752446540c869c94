"""Processes the benchmark starts: pinned with taskset, in their own session, stopped by their own PID."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
MODEL = "bench-model"  # the configuration name every request asks for
TRANSLATED_MODEL = "bench-claude"  # a configuration on the fake Anthropic upstream: the translated path
# What the web page loads when opened (src/admin/static): the page, then the API calls it makes.
WEB_PAGE = ("/ui/", "/api/providers", "/api/llm-configurations", "/api/llm-configurations/stats", "/api/usage")


def install_uvloop() -> None:
    """uvloop for the benchmark's own servers and clients, as the gateway uses it when present."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(pid: int) -> list[int]:
    """A PID and all its descendants (the gateway's worker processes count towards its memory and CPU)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    return out


def translation_workers(pid: int) -> list[int]:
    """The translation worker processes (litellm's, gateway/proxy/translation/worker.py) under a gateway."""
    found = []
    for p in tree(pid)[1:]:
        try:
            argv = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gateway.proxy.translation.worker" in argv:
            found.append(p)
    return found


def rss_kib(pid: int, *, without: Sequence[int] = ()) -> int:
    """Resident memory of a process tree, KiB; the subtrees of `without` left out."""
    skipped = {q for w in without for q in tree(w)}
    total = 0
    for p in tree(pid):
        if p in skipped:
            continue
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process tree."""
    ticks = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def cpu_busy() -> dict[str, tuple[int, int]]:
    """Per-CPU (total, idle) jiffies, to tell afterwards which core was the bottleneck."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        parts = line.split()
        if parts[0].startswith("cpu") and parts[0] != "cpu":
            nums = [int(x) for x in parts[1:]]
            out[parts[0]] = (sum(nums), nums[3] + nums[4])
    return out


def busy_pct(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Busy percentage of every CPU between two cpu_busy() samples."""
    pct = {}
    for cpu, (tot1, idle1) in after.items():
        tot0, idle0 = before.get(cpu, (tot1, idle1))
        dt = tot1 - tot0
        pct[cpu] = round(100 * (dt - (idle1 - idle0)) / dt, 1) if dt > 0 else 0.0
    return pct


def load_average() -> str:
    """The 1/5/15-minute load averages: how noisy the machine was."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class Proc:
    """One started process (and its children)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.perf_counter)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the process group it leads (its own session), then SIGKILL if it lingers."""
        if not self.alive():
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(name: str, cmd: Sequence[str], *, cpus: str | None, log_dir: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Proc:
    """Start CMD pinned to CPUS (taskset -c), output to log_dir/NAME.log, in a session of its own."""
    log = log_dir / f"{name}.log"
    full = ["taskset", "-c", cpus, *cmd] if cpus else list(cmd)
    handle = log.open("wb")
    popen = subprocess.Popen(full, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    handle.close()
    return Proc(name, popen, log)


def chat_body(model: str, *, stream: bool = False) -> bytes:
    """The small chat completion every load sends."""
    body: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello in one short sentence."},
        ],
        "max_tokens": 32,
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


def post_status(port: int, token: str, model: str, timeout: float = 5.0) -> int:
    """Status of one chat completion, 0 when nothing answers."""
    return request_status(port, "POST", "/v1/chat/completions", token, chat_body(model), timeout)


def get_status(port: int, path: str, token: str, timeout: float = 30.0) -> int:
    """Status of one GET (its body read), 0 when nothing answers."""
    return request_status(port, "GET", path, token, None, timeout)


def request_status(port: int, method: str, path: str, token: str, body: bytes | None, timeout: float) -> int:
    """Status of one request with the caller's token (its answer read), 0 when nothing answers."""
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return 0
    finally:
        conn.close()


def wait_first_200(proc: Proc, port: int, token: str, model: str, timeout: float = 60.0) -> float:
    """Seconds from the process start to its first 200 on a chat completion; RuntimeError if it never comes."""
    deadline = time.perf_counter() + timeout
    status = 0
    while time.perf_counter() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        status = post_status(port, token, model)
        if status == 200:
            return time.perf_counter() - proc.started
        if status:
            raise RuntimeError(f"{proc.name} answered HTTP {status}:\n{proc.tail()}")
        time.sleep(0.01)
    raise RuntimeError(f"{proc.name} gave no 200 within {timeout}s (last status {status}):\n{proc.tail()}")
