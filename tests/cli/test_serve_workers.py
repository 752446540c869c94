"""`serve --workers N`: N processes listening on one port (SO_REUSEPORT), all taking connections, changes
reaching every worker (NOTIFY on PostgreSQL, change_log on SQLite)."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gateway
from gateway.crypto.keyring import generate_key_entry
from tests.cli.test_cli import _env, free_port, wait_healthy

LISTEN, ESTABLISHED = "0A", "01"
# The child must run this very tree (a relative PYTHONPATH=src would not survive its cwd=tmp_path).
SRC = str(Path(gateway.__file__).resolve().parents[1])


def serve_two(tmp_path: Path, port: int, database_url: str) -> subprocess.Popen[str]:
    env = _env(PYTHONPATH=SRC, LLM_GATEWAY_DATABASE_URL=database_url, LLM_GATEWAY_ENCRYPTION_KEYS=generate_key_entry())
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--workers", "2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def tcp_sockets(port: int, state: str) -> set[str]:
    """Inodes of IPv4 TCP sockets whose local port is PORT, in STATE."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
            found.add(fields[9])
    return found


def test_two_workers_listen_on_one_port_and_both_take_connections(tmp_path: Path, postgres_url: str) -> None:
    port = free_port()
    proc = serve_two(tmp_path, port, postgres_url)
    conns: list[http.client.HTTPConnection] = []
    try:
        wait_healthy(port, proc)
        deadline = time.monotonic() + 20
        while len(children(proc.pid)) < 2 or not all(
            socket_inodes(w) & tcp_sockets(port, LISTEN) for w in children(proc.pid)
        ):
            assert time.monotonic() < deadline, "both workers never listened"
            time.sleep(0.1)
        workers = children(proc.pid)
        assert len(workers) == 2
        listening = [socket_inodes(w) & tcp_sockets(port, LISTEN) for w in workers]
        assert all(len(s) == 1 for s in listening) and listening[0] != listening[1]

        # Forty kept-alive connections: the kernel spreads them over both sockets (all on one: p = 2**-39).
        for _ in range(40):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == b'{"status": "ok"}'
            conns.append(conn)
        established = tcp_sockets(port, ESTABLISHED)
        served = [len(socket_inodes(w) & established) for w in workers]
        assert sum(served) == 40 and min(served) > 0, served
    finally:
        for conn in conns:
            conn.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.count("listening on") == 2
    assert all(not Path(f"/proc/{w}").exists() for w in workers)


def test_a_dead_worker_stops_the_whole_server(tmp_path: Path, postgres_url: str) -> None:
    port = free_port()
    proc = serve_two(tmp_path, port, postgres_url)
    try:
        wait_healthy(port, proc)
        deadline = time.monotonic() + 20
        while len(children(proc.pid)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        first, second = children(proc.pid)
        os.kill(first, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    assert "exited with -9; stopping the others" in err
    assert not Path(f"/proc/{second}").exists()


def test_two_workers_on_sqlite_share_a_token_revocation(tmp_path: Path) -> None:
    # SQLite has no NOTIFY: the workers learn of each other's writes from change_log.
    import json
    import urllib.request

    port = free_port()
    admin = "workers-admin-token-0123456789"
    env = _env(PYTHONPATH=SRC, LLM_GATEWAY_ADMIN_TOKEN=admin)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port), "--workers", "2"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def call(method: str, path: str, token: str, body: dict | None = None) -> int:  # type: ignore[type-arg]
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json", "Connection": "close"})
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                if path == "/api/admin/users":
                    call.created = json.loads(resp.read())  # type: ignore[attr-defined]
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        wait_healthy(port, proc)
        assert call("POST", "/api/admin/users", admin, {"name": "w", "is_admin": True}) == 201
        user = call.created  # type: ignore[attr-defined]
        # Fresh connections land on both workers; each caches the token.
        assert {call("GET", "/api/admin/users", user["token"]) for _ in range(20)} == {200}
        tokens_path = f"/api/admin/users/{user['id']}/tokens"
        request = urllib.request.Request(f"http://127.0.0.1:{port}{tokens_path}",
                                         headers={"Authorization": f"Bearer {admin}"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            (token_row,) = json.loads(resp.read())["items"]
        assert call("DELETE", f"/api/admin/tokens/{token_row['id']}", admin) == 204
        deadline = time.monotonic() + 20  # token caches never expire on their own: only the notification works
        while {call("GET", "/api/admin/users", user["token"]) for _ in range(20)} != {401}:
            assert time.monotonic() < deadline, "a worker still accepted the revoked token"
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
