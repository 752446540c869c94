"""Fixtures: settings → migrated database (SQLite and PostgreSQL) → app → aiohttp client; every test runs under
the key-leak watch (tests/leakwatch.py), which sees every gateway app started through aiohttp_client/_server.

PostgreSQL runs when LLM_GATEWAY_TEST_DATABASE_URL names a server (`make test` sets it to the documented default when
a server answers there): the session creates its own database there and drops it at the end; if the server cannot
be reached the PostgreSQL tests fail. Without the variable they skip saying so, and under CI=true the run stops at
once (tests/parts.py: the same rule for Chromium and node; the run ends with a line per part saying what ran).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from gateway.app import create_app
from gateway.crypto.keyring import generate_key_entry
from gateway.proxy.translation import Translator
from gateway.proxy.translation.pool import WorkerPool
from gateway.settings import Settings
from gateway.ssrf import UrlPolicy
from gateway.store import migrate
from tests import leakwatch, parts
from tests.leakwatch import TABLES, LeakWatch

PG_SERVER_URL = os.environ.get("LLM_GATEWAY_TEST_DATABASE_URL")
# Always both: without a server the PostgreSQL cases skip (or fail under CI) with a reason, never vanish.
BACKENDS = ["sqlite", "postgres"]
ADMIN_TOKEN = "test-operator-token-" + uuid.uuid4().hex
WATCHING = pytest.StashKey[leakwatch.Watching]()
TALLY = pytest.StashKey[parts.Tally]()


def pytest_configure(config: pytest.Config) -> None:
    """Under CI a run without PostgreSQL stops before it starts: half the suite would not run."""
    if parts.under_ci() and not PG_SERVER_URL:
        raise pytest.UsageError(f"CI=true, but the PostgreSQL half of the suite cannot run: {parts.POSTGRES_MISSING}")
    config.stash[TALLY] = parts.Tally()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Which parts of the suite ran, one line each."""
    if TALLY in config.stash:
        terminalreporter.write_sep("-", "parts of the suite")
        for line in config.stash[TALLY].lines():
            terminalreporter.write_line(line)


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(PG_SERVER_URL or ""), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def key_ring() -> str:
    """A fresh two-key ring for the run: `t1` encrypts, `t0` still decrypts."""
    return ",".join([generate_key_entry("t1"), generate_key_entry("t0")])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per run; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database made for this run, migrated, dropped at the end."""
    assert PG_SERVER_URL, "LLM_GATEWAY_TEST_DATABASE_URL is not set"
    name = f"llmgw_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    url = _with_database(PG_SERVER_URL, name)
    if not url.startswith("postgresql+asyncpg://"):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    try:
        migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _truncate_pg(url: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=10)
        try:
            await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """An empty, migrated database of each backend, private to the test."""
    if request.param == "sqlite":
        path = tmp_path / "gateway.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    return _empty_postgres(request)


@pytest.fixture(params=["postgres"])
def postgres_url(request: pytest.FixtureRequest) -> str:
    """For behaviour only PostgreSQL has: an empty, migrated PostgreSQL database."""
    return _empty_postgres(request)


def _empty_postgres(request: pytest.FixtureRequest) -> str:
    if not PG_SERVER_URL:
        parts.missing("PostgreSQL", parts.POSTGRES_MISSING)
    url: str = request.getfixturevalue("pg_database")
    _truncate_pg(url)
    return url


@pytest.fixture
def settings(database_url: str, key_ring: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own database, the test key ring, private base URLs allowed (fake upstreams)."""
    return Settings(
        database_url=database_url,
        encryption_keys=SecretStr(key_ring),
        admin_token=SecretStr(ADMIN_TOKEN),
        allow_private_base_urls=True,
        allow_key_export=True,  # the suite exercises sealed exports; the default (off) is test_key_moves' case
        data_dir=tmp_path / "data",
        usage_flush_interval_s=0.05,
    )


@pytest.fixture(scope="session")
def translation_pool(key_ring: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerPool]:
    """One set of translation workers for the whole run, on a loop of its own (each test has its own loop),
    serving every app made with the `settings` fixture's defaults; a test that kills or restarts workers
    overrides this fixture with None (the app then starts its own)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="translation-pool", daemon=True)
    thread.start()
    defaults = Settings(database_url="sqlite+aiosqlite:///unused.db", encryption_keys=SecretStr(key_ring),
                        allow_private_base_urls=True, data_dir=tmp_path_factory.mktemp("translation-pool"))
    pool = Translator.from_settings(defaults, urls=UrlPolicy.from_settings(defaults)).pool
    pool.home = loop
    try:
        yield pool
    finally:
        asyncio.run_coroutine_threadsafe(pool.close(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture
async def client(aiohttp_client, settings: Settings,  # type: ignore[no-untyped-def]
                 translation_pool: WorkerPool | None) -> AsyncIterator[TestClient]:
    """The whole gateway app behind a test client."""
    yield await aiohttp_client(create_app(settings, translation_pool=translation_pool))


@pytest.fixture
def admin_headers() -> dict[str, str]:
    """Headers of the operator (LLM_GATEWAY_ADMIN_TOKEN)."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The watch starts before the first fixture of the test is made."""
    item.stash[WATCHING] = leakwatch.start(item.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """After the last teardown: judge everything the test exposed; a leak fails the test's teardown."""
    report: pytest.TestReport = yield  # type: ignore[misc]
    if TALLY in item.config.stash:
        item.config.stash[TALLY].record(parts.parts_of(item), report)
    watching = item.stash.get(WATCHING, None)
    if watching is None:
        return report  # type: ignore[return-value]
    watching.reports.append(report)
    if report.when == "teardown":
        captured = [(name, content) for name, content in report.sections
                    if name.startswith(("Captured stdout", "Captured stderr"))]
        captured += leakwatch.log_files(getattr(item, "funcargs", {}).get("tmp_path"))
        findings = leakwatch.stop(watching, captured)
        del item.stash[WATCHING]
        if findings and not report.failed:
            report.outcome = "failed"
            report.longrepr = leakwatch.report(findings)
    # pytest prints captured output and logs (of failed tests; of every test with -rA) at the end: never a key,
    # including the ones learnt from the rows after the teardown.
    for made in watching.reports:
        made.sections = [(name, watching.watch.redact(content)) for name, content in made.sections]
    return report  # type: ignore[return-value]


@pytest.fixture(autouse=True)
def key_watch(request: pytest.FixtureRequest) -> Iterator[LeakWatch]:
    """The running test's leak watch (to plant data in it, or to read its counts). Autouse, so it is torn down
    after every other fixture of the test — its apps closed, their last usage flushed — and before the session's
    (which drop the PostgreSQL database): then it reads the rows."""
    watch = request.node.stash[WATCHING].watch
    yield watch
    watch.scan_databases()


@pytest.fixture
def aiohttp_client(aiohttp_client, key_watch: LeakWatch):  # type: ignore[no-untyped-def]
    """pytest-aiohttp's client factory; every gateway app it starts is watched."""

    def make(app: object, *args: object, **kwargs: object) -> Awaitable[TestClient]:
        if isinstance(app, web.Application):
            key_watch.attach(app)
        return aiohttp_client(app, *args, **kwargs)  # type: ignore[no-any-return]

    return make


@pytest.fixture
def aiohttp_server(aiohttp_server, key_watch: LeakWatch) -> Callable[..., Awaitable[TestServer]]:  # type: ignore[no-untyped-def]
    """pytest-aiohttp's server factory; every gateway app it starts is watched (fake upstreams are not)."""

    def make(app: web.Application, *args: object, **kwargs: object) -> Awaitable[TestServer]:
        key_watch.attach(app)
        return aiohttp_server(app, *args, **kwargs)  # type: ignore[no-any-return]

    return make
