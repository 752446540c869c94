"""SIGKILL on a private PostgreSQL cluster: the gateway while it holds unflushed usage and during batched usage
writes, `keys rotate --batch-size 1` mid-way through a rotation. Unflushed usage is lost (as designed), nothing
committed is, rows are whole, the gateway restarts cleanly, and every key still decrypts. Every wait has a
deadline."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from gateway.crypto.keyring import KeyRing, generate_key_entry, row_binding
from gateway.settings import parse_key_ring
from tests.conftest import ADMIN_TOKEN
from tests.reliability.processes import ROOT, Gateway

CHAT = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}


def count(url: str, sql: str) -> int:
    """One number from the database, on a connection of its own."""

    async def run() -> int:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
        try:
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def requests_counted(url: str) -> int:
    """Proxied requests the gateway has counted (/metrics settles its usage buffer first)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("llm_gateway_requests_total{")))


def setup_user(gateway: Gateway, upstream_key: str, upstream: str) -> dict[str, str]:
    """A user with one configuration on the standalone upstream; its Authorization header."""
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        user = http.post("/api/admin/users", json={"name": "load"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        auth = {"Authorization": f"Bearer {user.json()['token']}"}
        assert http.post("/api/llm-configurations", headers=auth, json={
            "name": "main", "provider": "custom", "model": "gpt-4o-mini", "api_key": upstream_key,
            "base_url": upstream}).status_code == 201
    return auth


def chat(gateway: Gateway, auth: dict[str, str], times: int) -> None:
    """`times` successful chat completions through the gateway."""
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        for _ in range(times):
            assert http.post("/v1/chat/completions", headers=auth, json=CHAT).status_code == 200


def test_killed_gateway_loses_exactly_its_unflushed_usage_and_restarts(
        gateway_env: dict[str, str], cluster_database: str, upstream_key: str, standalone_upstream: str,
        tmp_path: Path) -> None:
    # What the design promises: usage is written in batches every USAGE_FLUSH_INTERVAL_S and on a clean
    # shutdown. A SIGKILL loses the rows not yet flushed — and only those: committed rows stay, rows are whole,
    # and the gateway comes back on the same database with every key usable.
    env = {**gateway_env, "LLM_GATEWAY_USAGE_FLUSH_INTERVAL_S": "3600"}  # nothing flushes but shutdown
    rows = "SELECT count(*) FROM usage_records"
    first = Gateway(env, tmp_path / "gateway.log")
    auth = setup_user(first, upstream_key, standalone_upstream)
    chat(first, auth, 7)
    first.stop()  # SIGTERM: the last flush commits the 7
    assert count(cluster_database, rows) == 7
    second = Gateway(env, tmp_path / "gateway.log")
    chat(second, auth, 5)
    assert requests_counted(second.url) == 5  # the gateway holds 5 finished requests in memory...
    assert count(cluster_database, rows) == 7  # ...none of them written yet
    second.kill()
    assert count(cluster_database, rows) == 7  # the 5 unflushed rows are lost; the 7 committed ones are not
    third = Gateway(env, tmp_path / "gateway.log")
    chat(third, auth, 1)  # the key still decrypts, the configuration still serves
    third.stop()
    assert count(cluster_database, rows) == 8
    assert count(cluster_database, "SELECT count(*) FROM usage_records WHERE status <> 200 "
                                   "OR configuration_id IS NULL OR prompt_tokens <> 11") == 0  # rows whole
    assert upstream_key not in (tmp_path / "gateway.log").read_text()


def test_killed_during_batched_writes_leaves_only_whole_rows(gateway_env: dict[str, str], cluster_database: str,
                                                            upstream_key: str, standalone_upstream: str,
                                                            tmp_path: Path) -> None:
    env = {**gateway_env, "LLM_GATEWAY_USAGE_FLUSH_INTERVAL_S": "0.05", "LLM_GATEWAY_USAGE_BATCH_SIZE": "5"}
    gateway = Gateway(env, tmp_path / "gateway.log")
    auth = setup_user(gateway, upstream_key, standalone_upstream)
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=gateway.url, timeout=5) as mine:
            while not stop.is_set():
                try:
                    mine.post("/v1/chat/completions", headers=auth, json=CHAT)
                except httpx.HTTPError:
                    return  # the gateway is gone
    workers = [threading.Thread(target=load) for _ in range(6)]
    for worker in workers:
        worker.start()
    try:  # several batches committed while requests keep coming, then the kill lands among the writes
        deadline = time.monotonic() + 60
        while count(cluster_database, "SELECT count(*) FROM usage_records") < 60:
            assert time.monotonic() < deadline, "usage rows are not written under load"
            time.sleep(0.05)
        gateway.kill()
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)
    after_kill = count(cluster_database, "SELECT count(*) FROM usage_records")
    restarted = Gateway(env, tmp_path / "gateway.log")
    try:
        chat(restarted, auth, 1)
        deadline = time.monotonic() + 30
        while count(cluster_database, "SELECT count(*) FROM usage_records") < after_kill + 1:
            assert time.monotonic() < deadline, "usage is not written after the restart"
            time.sleep(0.05)
    finally:
        restarted.stop()
    assert count(cluster_database, "SELECT count(*) FROM usage_records WHERE status <> 200 "
                                   "OR configuration_id IS NULL OR prompt_tokens <> 11") == 0  # rows whole
    assert upstream_key not in (tmp_path / "gateway.log").read_text()


def test_killed_rotation_leaves_every_key_decryptable_and_resumes(cluster_database: str, tmp_path: Path) -> None:
    old, new = generate_key_entry("old"), generate_key_entry("new")
    rows = 1500
    plain = asyncio.run(_seed(cluster_database, KeyRing.from_entries(parse_key_ring(old)), rows))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_GATEWAY_")}
    env |= {"LLM_GATEWAY_DATABASE_URL": cluster_database, "LLM_GATEWAY_ENCRYPTION_KEYS": f"{new},{old}",
            "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    rotate = [sys.executable, "-m", "gateway", "keys", "rotate", "--batch-size", "1"]
    process = subprocess.Popen(rotate, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    on_new = "SELECT count(*) FROM llm_configurations WHERE key_id = 'new'"
    try:
        deadline = time.monotonic() + 60
        while count(cluster_database, on_new) < 50:
            assert process.poll() is None, "the rotation ended before 50 rows moved"
            assert time.monotonic() < deadline, "the rotation does not move rows"
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
    # Killed mid-way: some rows under the new key id, the others still under the old one, none lost or doubled.
    moved = count(cluster_database, on_new)
    assert 50 <= moved < rows, "the rotation finished before it could be killed: seed more rows"
    assert count(cluster_database, "SELECT count(*) FROM llm_configurations WHERE key_id = 'old'") == rows - moved
    ring = KeyRing.from_entries(parse_key_ring(f"{new},{old}"))
    assert asyncio.run(_decrypted(cluster_database, ring)) == plain
    done = subprocess.run(rotate[:-2] + ["--batch-size", "200"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0 and '"remaining": 0' in done.stdout, done.stderr[-500:]
    assert count(cluster_database, "SELECT count(*) FROM llm_configurations WHERE key_id <> 'new'") == 0
    assert asyncio.run(_decrypted(cluster_database, KeyRing.from_entries(parse_key_ring(new)))) == plain


async def _seed(url: str, ring: KeyRing, rows: int) -> dict[str, str]:
    """`rows` configurations of one user under `ring`; id → plaintext key."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        user_id = uuid.uuid4()
        await conn.execute("INSERT INTO users (id, name, is_admin, created_at) VALUES ($1, 'rot', false, now())",
                           user_id)
        plain, records = {}, []
        for n in range(rows):
            cid = uuid.uuid4()
            plain[str(cid)] = f"sk-rot-{n}-{uuid.uuid4().hex}"
            records.append((cid, user_id, f"c{n}", ring.encrypt(plain[str(cid)], binding=row_binding(cid, user_id))))
        await conn.executemany(
            "INSERT INTO llm_configurations (id, user_id, name, provider, model, api_key_encrypted, key_id, "
            "is_default, is_active, fallback_ids, test_status, created_at, updated_at) VALUES "
            "($1, $2, $3, 'openai', 'gpt-4o', $4, 'old', false, true, '[]', 'untested', now(), now())", records)
        return plain
    finally:
        await conn.close()


async def _decrypted(url: str, ring: KeyRing) -> dict[str, str]:
    """Every stored key decrypted under `ring` (raises if any does not)."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        rows = await conn.fetch("SELECT id, user_id, api_key_encrypted FROM llm_configurations")
    finally:
        await conn.close()
    return {str(r["id"]): ring.decrypt(r["api_key_encrypted"], binding=row_binding(r["id"], r["user_id"]))
            for r in rows}
