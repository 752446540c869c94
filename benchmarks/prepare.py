"""A database for the gateway under test: migrated, one user with a token, one configuration `bench-model`
pointing at the fake upstream and one `bench-claude` on the fake Anthropic one (BENCH_ANTHROPIC_URL/KEY). Made
with the gateway's own repository functions, as the CLI and API would.

Run as a child process with the measured tree's src/ first on PYTHONPATH (its migrations and models):
    python -m benchmarks.prepare sqlite DIRECTORY | postgres SERVER_URL   (upstream in BENCH_UPSTREAM_URL/KEY)
prints one JSON object (Prepared) on stdout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from benchmarks.procs import MODEL, TRANSLATED_MODEL
from gateway.accounts.users import create_user, issue_token
from gateway.configurations.crud import Policy, create_configuration
from gateway.configurations.providers import ProviderCatalog
from gateway.crypto.keyring import KeyRing, generate_key_entry
from gateway.settings import parse_key_ring
from gateway.store import migrate
from gateway.store.db import make_engine, make_sessionmaker


def _policy() -> Policy:
    """The save-time policy with private addresses allowed, spelt the way the measured tree spells it: `--src` may
    point at a checkout from before the UrlPolicy object (a boolean then) for a before/after comparison."""
    try:
        from gateway.ssrf import UrlPolicy
    except ImportError:
        return Policy(catalog=ProviderCatalog.load(None), allow_private_base_urls=True)
    return Policy(catalog=ProviderCatalog.load(None), urls=UrlPolicy(allow_private=True))


@dataclass(frozen=True)
class Prepared:
    """What the gateway process needs to serve the benchmark's caller."""

    database_url: str
    encryption_keys: str
    token: str
    drop: str | None = None  # a PostgreSQL database to drop afterwards


async def fill(database_url: str, keys: str, upstream_url: str, upstream_key: str, *, translated: bool = True) -> str:
    """Migrate, then add the user, its token and the configurations (`bench-claude` when `translated`); returns
    the token."""
    await migrate.upgrade_async(database_url)
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            user = await create_user(session, name="bench")
            _, token = await issue_token(session, user_id=user.id, name="bench")
            keyring = KeyRing.from_entries(parse_key_ring(keys))
            policy = _policy()
            await create_configuration(
                session, keyring=keyring, policy=policy, user_id=user.id, name=MODEL, provider="openai",
                model="gpt-4o-mini",
                api_key=upstream_key, base_url=upstream_url,
            )
            if translated:
                await create_configuration(
                    session, keyring=keyring, policy=policy, user_id=user.id, name=TRANSLATED_MODEL,
                    provider="anthropic", model="claude-sonnet-4-5", api_key=os.environ["BENCH_ANTHROPIC_KEY"],
                    base_url=os.environ["BENCH_ANTHROPIC_URL"],
                )
            await session.commit()
            return token
    finally:
        await engine.dispose()


def sqlite(directory: Path, upstream_url: str, upstream_key: str) -> Prepared:
    """A fresh SQLite file in DIRECTORY (one a previous run left there is replaced)."""
    for stale in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
        (directory / stale).unlink(missing_ok=True)
    url = f"sqlite+aiosqlite:///{directory / 'gateway.db'}"
    keys = generate_key_entry("bench1")
    return Prepared(url, keys, asyncio.run(fill(url, keys, upstream_url, upstream_key)))


def _asyncpg_dsn(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


async def _admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres(server_url: str, upstream_url: str, upstream_key: str) -> Prepared:
    """A fresh database on the PostgreSQL server SERVER_URL (any database on it), dropped by drop_postgres."""
    name = f"llmgw_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    head, _, _ = server_url.rpartition("/")
    url = f"postgresql+asyncpg://{head.split('://', 1)[1]}/{name}"
    keys = generate_key_entry("bench1")
    try:
        token = asyncio.run(fill(url, keys, upstream_url, upstream_key))
    except BaseException:
        drop_postgres(server_url, name)
        raise
    return Prepared(url, keys, token, drop=name)


def drop_postgres(server_url: str, name: str) -> None:
    """Drop a database postgres() made."""
    asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> None:
    """Prepare one database; print what the gateway needs as JSON."""
    kind, where = sys.argv[1], sys.argv[2]
    url, key = os.environ["BENCH_UPSTREAM_URL"], os.environ["BENCH_UPSTREAM_KEY"]
    prepared = sqlite(Path(where), url, key) if kind == "sqlite" else postgres(where, url, key)
    print(json.dumps(dataclasses.asdict(prepared)))


if __name__ == "__main__":
    main()
