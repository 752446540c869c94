"""A real `llm-gateway serve` process and the bundled fake OpenAI upstream, driven over HTTP as a user would."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.cli.test_cli import _env, free_port, wait_healthy

REPO = Path(__file__).resolve().parents[2]


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 60) -> list[str]:
    """stdout lines up to and including the first holding `marker`."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr is not None else ""
            raise AssertionError(f"exited before {marker!r}: {''.join(lines)}{err}")
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} within {timeout} s")


def start_fake(key: str, cwd: Path = REPO) -> tuple[subprocess.Popen[str], str]:
    """`python -m tests.fakes.openai_upstream` on a free port accepting `key`; returns it and its base URL (…/v1)."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_upstream", "--port", "0", "--key", key],
                            cwd=cwd, env=_env(PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = _read_until(proc, "listening on")[-1]
    return proc, line.rsplit(" ", 1)[-1].strip()


class Gateway:
    """`llm-gateway serve` in `cwd` with the given settings; `admin_token` is the one its start-up block printed."""

    def __init__(self, cwd: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(self.port)], cwd=cwd,
                                     env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.banner = "".join(_read_until(self.proc, "listening on"))
        wait_healthy(self.port, self.proc)
        token = [line.strip() for line in self.banner.splitlines() if line.strip().startswith("lgw_")]
        self.admin_token = token[0] if token else ""

    def call(self, method: str, path: str, token: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """One HTTP call; returns (status, parsed JSON or text)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def raw(self, request: bytes) -> bytes:
        """Send bytes as they are (urllib refuses control characters) and return the answer's first bytes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(request)
            return sock.recv(4096)

    def stop(self) -> tuple[str, str]:
        """SIGTERM, then (everything printed after the banner, everything logged)."""
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=30)
        return out, err


def stop_fake(proc: subprocess.Popen[str]) -> None:
    """Stop the fake upstream."""
    proc.terminate()
    proc.communicate(timeout=30)
