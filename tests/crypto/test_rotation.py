"""Key rotation on SQLite and PostgreSQL: interrupted after its first batch and resumed, every key decryptable
under the new key and nothing left on the old; two rotations at once; retiring the old key; the status and
rotate endpoints; the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from gateway.cli.bootstrap import check_database
from gateway.configurations.crud import decrypt_key
from gateway.crypto.keyring import KeyRing, generate_key_entry, row_binding
from gateway.crypto.rotation import rotate_keys
from gateway.settings import Settings, parse_key_ring
from gateway.store.changes import Change
from gateway.store.models import LLMConfiguration
from gateway.web.appkeys import CHANGES, KEYRING, SESSIONMAKER
from tests.factories import make_configuration, make_user


async def _seed_on_old_key(client: TestClient, count: int) -> dict[str, str]:
    """`count` configurations whose keys are stored under the ring's second (old) key; id → plaintext."""
    app = client.server.app
    ring = app[KEYRING]
    old = KeyRing((ring.keys[1],))
    users = [await make_user(client) for _ in range(3)]
    plain = {}
    for n in range(count):
        made = await make_configuration(client, users[n % 3])
        plain[made["id"]] = made["api_key"]
    async with app[SESSIONMAKER]() as session:
        for row in (await session.execute(select(LLMConfiguration))).scalars():
            row.api_key_encrypted = old.encrypt(plain[str(row.id)], binding=row_binding(row.id, row.user_id))
            row.key_id = old.primary_id
        await session.commit()
    return plain


async def _key_ids(client: TestClient) -> dict[str, int]:
    async with client.server.app[SESSIONMAKER]() as session:
        ids = (await session.execute(select(LLMConfiguration.key_id))).scalars().all()
    return {k: ids.count(k) for k in set(ids)}


async def test_interrupted_rotation_resumes_and_the_old_key_can_go(client: TestClient, settings: Settings) -> None:
    app = client.server.app
    ring = app[KEYRING]
    plain = await _seed_on_old_key(client, 7)
    seen: list[Change] = []
    app[CHANGES].subscribe(seen.append)

    first = await rotate_keys(app[SESSIONMAKER], keyring=ring, bus=app[CHANGES], batch_size=3, max_batches=1)
    assert (first.rotated, first.batches, first.remaining) == (3, 1, 4)
    assert await _key_ids(client) == {ring.primary_id: 3, ring.keys[1][0]: 4}
    assert seen and all(c.kind == "configurations" for c in seen)  # caches learn of the new ciphertexts

    rest = await rotate_keys(app[SESSIONMAKER], keyring=ring, bus=app[CHANGES], batch_size=3)
    assert (rest.rotated, rest.batches, rest.remaining, rest.failed) == (4, 2, 0, [])
    assert await _key_ids(client) == {ring.primary_id: 7}

    # Retire the old key: a ring of the new key alone reads every row, and serve's check passes.
    new_only = KeyRing((ring.keys[0],))
    async with app[SESSIONMAKER]() as session:
        rows = list((await session.execute(select(LLMConfiguration))).scalars())
    assert {str(r.id): decrypt_key(new_only, r) for r in rows} == plain
    entry = next(e for e in settings.encryption_keys.get_secret_value().split(",") if e.startswith(ring.primary_id))
    await check_database(settings.model_copy(update={"encryption_keys": SecretStr(entry)}), apply_migrations=False)
    nothing = await rotate_keys(app[SESSIONMAKER], keyring=ring, bus=app[CHANGES])
    assert (nothing.rotated, nothing.batches) == (0, 0)


async def test_two_rotations_at_once_rotate_each_row_once(client: TestClient) -> None:
    app = client.server.app
    plain = await _seed_on_old_key(client, 12)
    reports = await asyncio.gather(*(
        rotate_keys(app[SESSIONMAKER], keyring=app[KEYRING], bus=app[CHANGES], batch_size=2) for _ in range(2)
    ))
    assert sum(r.rotated for r in reports) == len(plain)
    assert await _key_ids(client) == {app[KEYRING].primary_id: len(plain)}


async def test_rows_locked_by_a_running_gateway_are_skipped_then_rotated(
    aiohttp_client, postgres_url: str, key_ring: str, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """PostgreSQL: a row held by another transaction is skipped (SKIP LOCKED), not waited on; a rerun gets it."""
    from gateway.app import create_app
    from tests.conftest import ADMIN_TOKEN

    settings = Settings(database_url=postgres_url, encryption_keys=SecretStr(key_ring),
                        admin_token=SecretStr(ADMIN_TOKEN), data_dir=tmp_path)
    client = await aiohttp_client(create_app(settings))
    app = client.server.app
    plain = await _seed_on_old_key(client, 4)
    held = sorted(plain)[0]
    async with app[SESSIONMAKER]() as holder:
        await holder.execute(select(LLMConfiguration).where(LLMConfiguration.id == uuid.UUID(held)).with_for_update())
        report = await asyncio.wait_for(
            rotate_keys(app[SESSIONMAKER], keyring=app[KEYRING], bus=app[CHANGES], batch_size=10), timeout=10
        )
        assert report.rotated == 3 and report.remaining == 1
        await holder.rollback()
    report = await rotate_keys(app[SESSIONMAKER], keyring=app[KEYRING], bus=app[CHANGES])
    assert report.rotated == 1 and report.remaining == 0


async def test_undecryptable_rows_are_reported_not_looped(client: TestClient) -> None:
    app = client.server.app
    plain = await _seed_on_old_key(client, 3)
    broken = sorted(plain)[0]
    async with app[SESSIONMAKER]() as session:
        row = await session.get(LLMConfiguration, uuid.UUID(broken))
        assert row is not None
        other = await session.get(LLMConfiguration, uuid.UUID(sorted(plain)[1]))
        assert other is not None
        row.api_key_encrypted = other.api_key_encrypted  # copied from another row: the binding refuses it
        await session.commit()
    report = await rotate_keys(app[SESSIONMAKER], keyring=app[KEYRING], bus=app[CHANGES], batch_size=1)
    assert [str(f) for f in report.failed] == [broken] and report.rotated == 2 and report.remaining == 1


async def test_status_and_rotate_endpoints(client: TestClient, admin_headers: dict[str, str]) -> None:
    app = client.server.app
    ring = app[KEYRING]
    await _seed_on_old_key(client, 4)
    user = await make_user(client)
    assert (await client.get("/api/admin/encryption/status", headers=user.headers)).status == 403
    status = await (await client.get("/api/admin/encryption/status", headers=admin_headers)).json()
    assert status["needs_rotation"] == 4 and status["all_in_ring"] is True
    assert status["key_ids"] == [{"key_id": ring.keys[1][0], "rows": 4, "team_keys": 0, "in_ring": True,
                                  "primary": False}]
    resp = await client.post("/api/admin/encryption/rotate", json={"batch_size": 0}, headers=admin_headers)
    assert resp.status == 422 and (await resp.json())["error"]["param"] == "batch_size"
    resp = await client.post("/api/admin/encryption/rotate", json={"batch_size": 3, "max_batches": 1},
                             headers=admin_headers)
    assert (await resp.json())["remaining"] == 1
    resp = await client.post("/api/admin/encryption/rotate", headers=admin_headers)
    assert (await resp.json())["rotated"] == 1
    status = await (await client.get("/api/admin/encryption/status", headers=admin_headers)).json()
    assert status["needs_rotation"] == 0 and status["key_ids"][0]["primary"] is True


def test_cli_rotate_then_retire(tmp_path: Path) -> None:
    old, new = generate_key_entry("old"), generate_key_entry("new")
    url = f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"

    def cli(*args: str, keys: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_GATEWAY_")}
        env |= {"LLM_GATEWAY_DATABASE_URL": url, "LLM_GATEWAY_ENCRYPTION_KEYS": keys}
        return subprocess.run([sys.executable, "-m", "gateway", *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)

    assert cli("db", "upgrade", keys=old).returncode == 0

    async def seed() -> None:
        from gateway.store.db import make_engine, make_sessionmaker
        from gateway.store.models import User

        engine = make_engine(url)
        ring = KeyRing.from_entries(parse_key_ring(old))
        async with make_sessionmaker(engine)() as session:
            user = User(id=uuid.uuid4(), name="erin")
            session.add(user)
            await session.flush()
            for n in range(5):
                cid = uuid.uuid4()
                session.add(LLMConfiguration(id=cid, user_id=user.id, name=f"c{n}", provider="openai", model="gpt-4o",
                                             api_key_encrypted=ring.encrypt(f"sk-erin-{n}-0123456789",
                                                                            binding=row_binding(cid, user.id)),
                                             key_id="old"))
            await session.commit()
        await engine.dispose()

    asyncio.run(seed())
    refused = cli("serve", "--port", "1", keys=new)
    assert refused.returncode == 2 and "5 configurations under key id 'old'" in refused.stderr
    partial = cli("keys", "rotate", "--batch-size", "2", "--max-batches", "1", keys=f"{new},{old}")
    assert partial.returncode == 0 and '"remaining": 3' in partial.stdout
    done = cli("keys", "rotate", keys=f"{new},{old}")
    assert done.returncode == 0 and '"remaining": 0' in done.stdout and "sk-erin" not in done.stdout
    assert cli("db", "current", keys=new).returncode == 0
