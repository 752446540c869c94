"""Admin API fixtures: a client whose every response body and header, every log line (DEBUG and up) and, at
the end of each test, every raw database row is searched for plaintext keys (and responses for ciphertext)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app
from gateway.proxy.translation.pool import WorkerPool
from gateway.settings import Settings
from gateway.web.appkeys import ENGINE
from tests.admin.browser import launch
from tests.conftest import TABLES
from tests.leakwatch import KEYS, WatchHandler, new_watched_key, watched

LEAK_TEST = "test_no_key_leaks.py"


ADMIN_TESTS = pytest.StashKey[int]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The leak summary runs after every other admin test, so its totals cover them all."""
    summary = [item for item in items if LEAK_TEST in item.nodeid]
    rest = [item for item in items if LEAK_TEST not in item.nodeid]
    admin = [index for index, item in enumerate(rest) if item.nodeid.startswith("tests/admin/")]
    config.stash[ADMIN_TESTS] = len(admin)
    if summary and admin:
        items[:] = rest[: admin[-1] + 1] + summary + rest[admin[-1] + 1 :]


# Every key the admin tests send contains this marker (in the middle, so its masked form does not).
LEAK_MARK = "PLAINTEXTKEY"


@dataclass
class LeakWatch:
    """Searches everything a client or an operator could see for the plaintext keys the tests used."""

    short_keys: set[str] = field(default_factory=set)
    findings: list[str] = field(default_factory=list)
    ciphertexts: set[str] = field(default_factory=set)
    bodies: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"responses": 0, "log_lines": 0, "rows": 0})

    def new_key(self, length: int = 0) -> str:
        """A fresh plaintext key, watched here and by tests/leakwatch.py; `length` < 16 gives a short one (masked
        as ****), starting with `~` so that no random hex or token can contain it by chance."""
        if 0 < length < 16:
            key = new_watched_key(length, "the admin tests' new_key()")
            self.short_keys.add(key)
            return key
        return watched(f"sk-{LEAK_MARK}-{uuid.uuid4().hex}", "the admin tests' new_key()")

    def leaks(self, text: str) -> bool:
        """True when the text holds a test key (this watch's, or one the running test registered)."""
        return (LEAK_MARK in text or any(key in text for key in self.short_keys)
                or any(key in text for key, _ in KEYS.items()))

    def scan(self, where: str, text: str) -> None:
        """Record a finding when `text` holds a plaintext key."""
        if self.leaks(text):
            self.findings.append(f"{where}: {text[:300]}")

    def log(self, record: logging.LogRecord, line: str) -> None:
        """A formatted log line (tracebacks included)."""
        self.counts["log_lines"] += 1
        self.scan(f"log {record.name}", line)

    def response(self, text: str) -> None:
        """A response body or header block as a client received it."""
        self.counts["responses"] += 1
        self.bodies.append(text)
        self.scan("response", text)

    async def scan_database(self, engine: AsyncEngine) -> None:
        """Read every raw row of every table; a plaintext key there is a leak, ciphertexts are remembered."""
        async with engine.connect() as conn:
            for table in TABLES:
                for row in (await conn.execute(text(f"SELECT * FROM {table}"))).mappings():
                    self.counts["rows"] += 1
                    self.scan(f"table {table}", repr(dict(row)))
                    if table == "llm_configurations":
                        self.ciphertexts.add(row["api_key_encrypted"])
        for body in self.bodies:
            for ciphertext in self.ciphertexts:
                if ciphertext in body or ciphertext.split(".")[-1] in body:
                    self.findings.append(f"ciphertext in a response: {body[:300]}")
        self.bodies.clear()


@pytest.fixture(scope="package")
def leak_watch() -> Iterator[LeakWatch]:
    """One watch for all admin tests; everything logs at DEBUG into it meanwhile."""
    watch = LeakWatch()
    handler = WatchHandler(watch)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield watch
    root.removeHandler(handler)
    root.setLevel(old_level)


def _watching(watch: LeakWatch) -> Any:
    """An outermost middleware handing every response (headers and body, errors included) to the watch."""

    @web.middleware
    async def watch_responses(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        body = response.body if isinstance(response, web.Response) else None
        text_body = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        watch.response(f"{dict(response.headers)!r} {text_body}")
        return response

    return watch_responses


MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_client(aiohttp_client, settings: Settings, leak_watch: LeakWatch,  # type: ignore[no-untyped-def]
                      translation_pool: WorkerPool | None) -> AsyncIterator[MakeClient]:
    """Build a watched client of the whole app, with settings overridden by keyword (the session's translation
    workers when the overrides leave theirs alone)."""
    engines: list[AsyncEngine] = []

    async def make(**overrides: Any) -> TestClient:
        app = create_app(settings.model_copy(update=overrides), translation_pool=translation_pool)
        app.middlewares.insert(0, _watching(leak_watch))
        made: TestClient = await aiohttp_client(app)
        engines.append(app[ENGINE])
        return made

    yield make
    for engine in engines[:1]:  # every client of a test shares its database
        await leak_watch.scan_database(engine)
    assert not leak_watch.findings, leak_watch.findings


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient:
    """The whole gateway app behind a watched test client."""
    return await make_client()


@pytest.fixture
def new_key(leak_watch: LeakWatch) -> Callable[..., str]:
    """Make a plaintext key the leak watch looks for."""
    return leak_watch.new_key


# The browser tests' fixtures (test_*_browser.py): Chromium, and a gateway on a real port for it to open.
@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Chromium for one test."""
    async with launch() as chromium:
        yield chromium


@pytest.fixture
async def gateway(aiohttp_server, aiohttp_client, settings: Settings) -> tuple[TestServer, TestClient]:  # type: ignore[no-untyped-def]
    """A real gateway on a real port, and a client of it for setup and checks."""
    server = await aiohttp_server(create_app(settings))
    return server, await aiohttp_client(server)
