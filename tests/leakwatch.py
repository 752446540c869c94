"""The key-leak watch every test runs under (wired in tests/conftest.py).

For the whole test — setup, call and teardown — it collects what a client, an operator or a CI log could see:
every log record (one root handler of its own, at DEBUG, chatty third-party loggers included), every answer of
every gateway app the test starts (headers and body, streams joined), after the test every raw row of the
gateway's database (audit and usage rows included), the captured stdout/stderr of every phase, and the `*.log`
files left in the test's tmp_path (gateways run as processes). Then it
looks there for the EXACT provider keys the test made — registered by the factories and helpers that make them
(`watched()`), the fakes' default keys, and every key the gateway stored (decrypted from the rows) — and for
stored ciphertext in answers. Exact keys, not a pattern: random tokens cannot match by chance. A finding names
where it was seen and which test made the key, and shows the key only as a hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from gateway.crypto.keyring import CryptoError, KeyRing
from gateway.crypto.team_keys import decrypt_configuration_key
from gateway.store.models import LLMConfiguration
from gateway.web.appkeys import KEYRING, SETTINGS
from tests.fakes.anthropic_upstream import DEFAULT_ANTHROPIC_KEY
from tests.fakes.openai_upstream import DEFAULT_OPENAI_KEY

# Loggers that are quiet unless asked: the watch asks them for everything while a test runs.
CHATTY_LOGGERS = ("aiohttp.access", "aiohttp.server", "aiohttp.client", "aiohttp.web", "LiteLLM", "LiteLLM Router",
                  "LiteLLM Proxy", "httpx", "httpcore", "openai", "gateway", "admin", "sqlalchemy.engine",
                  "asyncpg", "aiosqlite")
TABLES = ("change_log", "audit_events", "usage_records", "conversation_configurations", "member_defaults",
          "llm_configurations", "team_keys", "team_members", "teams", "api_tokens", "users")
# A stored key shorter or plainer than this is not watched unless a test registered it: such strings occur by
# chance (a fuzzer's `aaaaaaaaaaaa` is also the name it sent).
MIN_HARVESTED, MIN_DISTINCT = 12, 8
CONTEXT = 60


def fingerprint(key: str) -> str:
    """How a finding names a key without showing it."""
    return f"sha256:{hashlib.sha256(key.encode()).hexdigest()[:12]} ({len(key)} chars)"


@dataclass(frozen=True)
class Origin:
    """Which test made a key, and what made it."""

    test: str
    maker: str


class KeyRegistry:
    """The provider keys the tests made; the watch looks for exactly these.

    One per process (pytest runs one test at a time): the factories register into it without a fixture, and
    each test starts from the permanent keys only (the fakes' defaults)."""

    def __init__(self, permanent: dict[str, str]) -> None:
        self._permanent = {key: Origin("every test", maker) for key, maker in permanent.items()}
        self._keys: dict[str, Origin] = dict(self._permanent)
        self.test = "no test"

    def begin(self, test: str) -> None:
        """Forget the previous test's keys; keys made from now on are `test`'s."""
        self._keys = dict(self._permanent)
        self.test = test

    def add(self, key: str, maker: str) -> str:
        """Watch `key` from now to the end of the test; returns it."""
        if key:
            self._keys.setdefault(key, Origin(self.test, maker))
        return key

    def discard(self, key: str) -> None:
        """Stop watching a key a test exposes on purpose (to prove that a watch sees it)."""
        self._keys.pop(key, None)

    def items(self) -> list[tuple[str, Origin]]:
        """Every watched key with its origin."""
        return list(self._keys.items())


KEYS = KeyRegistry({DEFAULT_OPENAI_KEY: "tests/fakes/openai_upstream.py DEFAULT_OPENAI_KEY",
                    DEFAULT_ANTHROPIC_KEY: "tests/fakes/anthropic_upstream.py DEFAULT_ANTHROPIC_KEY"})


def watched(key: str, maker: str = "") -> str:
    """Register a key the test is about to use (returns it): the watch fails the test if it shows up anywhere."""
    return KEYS.add(key, maker or "a test helper")


def new_watched_key(length: int = 0, maker: str = "") -> str:
    """A fresh watched key: `sk-watch-<hex>`, or `length` < 16 characters starting with `~` (no random data has one)."""
    if 0 < length < 16:
        key = "~" + "".join(secrets.choice(string.ascii_letters) for _ in range(length - 1))
    else:
        key = f"sk-watch-{secrets.token_hex(16)}"
    return watched(key, maker or "new_watched_key()")


@dataclass
class Recorded:
    """One answer of a gateway app as a client got it."""

    where: str
    parts: list[bytes] = field(default_factory=list)

    def text(self) -> str:
        """Headers and body, chunks joined (a key split over two chunks is still one key)."""
        return b"".join(self.parts).decode("utf-8", "replace")


@dataclass
class Finding:
    """A watched key (or a stored ciphertext) seen somewhere it must not be."""

    where: str
    what: str
    context: str

    def __str__(self) -> str:
        return f"{self.what} in {self.where}: …{self.context}…"


class LeakWatch:
    """What one test exposed, and the check of it against the registry."""

    def __init__(self, registry: KeyRegistry = KEYS) -> None:
        self.registry = registry
        self.texts: list[tuple[str, str]] = []
        self.responses: list[Recorded] = []
        self.ciphertexts: set[str] = set()
        self.databases: dict[str, KeyRing] = {}
        self.token_lines: list[str] = []
        self.allowed: list[tuple[tuple[str, ...], frozenset[str]]] = []
        self.counts = {"log_lines": 0, "responses": 0, "rows": 0, "outputs": 0}
        self.scan_errors: list[Finding] = []

    def see(self, where: str, seen: str) -> None:
        """Something a client, an operator or a CI log could read."""
        self.texts.append((where, seen))

    def log(self, record: logging.LogRecord, line: str) -> None:
        """A formatted log record."""
        self.counts["log_lines"] += 1
        self.see(f"a log record of {record.name} ({record.pathname}:{record.lineno})",
                 f"{line} {record.__dict__.get('args')!r}")
        if "Bearer lgw_" in line:
            self.token_lines.append(f"a log record of {record.name} ({record.pathname}:{record.lineno})")

    def allow_in_logs(self, loggers: tuple[str, ...], keys: set[str]) -> None:
        """`keys` may appear in records of `loggers` (and their children) in this test: for plaintext that
        the test itself stores in clear by design, as a legacy table does, read and written by a DB driver."""
        self.allowed.append((loggers, frozenset(keys)))

    def _allowed(self, where: str, key: str) -> bool:
        return any(key in keys and any(where.startswith(f"a log record of {name}") for name in loggers)
                   for loggers, keys in self.allowed)

    def output(self, section: str, captured: str) -> None:
        """Captured stdout or stderr."""
        self.counts["outputs"] += 1
        self.see(section, captured)

    def attach(self, app: web.Application) -> None:
        """Record every answer of a gateway app; remember its database for the row scan."""
        if SETTINGS not in app or app.frozen:
            return
        self.databases.setdefault(app[SETTINGS].database_url, app[KEYRING])
        app.on_response_prepare.append(self._on_prepare)

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        recorded = Recorded(f"the answer to {request.method} {request.path} ({response.status})")
        recorded.parts.append(f"{response.status} {response.reason} {dict(response.headers)!r}\n".encode())
        self.responses.append(recorded)
        self.counts["responses"] += 1
        if isinstance(response, web.Response):
            if isinstance(response.body, bytes):
                recorded.parts.append(response.body)
            return
        write = response.write

        async def recording_write(data: bytes | bytearray | memoryview) -> None:
            recorded.parts.append(bytes(data))
            await write(data)

        response.write = recording_write  # type: ignore[method-assign]

    def scan_databases(self) -> None:
        """Read every raw row of every database the test's apps used; learn the keys they store."""
        for url, ring in self.databases.items():
            try:
                asyncio.run(self._scan_database(url, ring))
            except (SQLAlchemyError, OSError) as exc:
                # Rows nobody read may hold a key: an unreadable database fails the test, it is not a pass.
                reason = (str(exc).strip().splitlines() or [""])[0][:200]
                self.scan_errors.append(Finding(
                    f"the row scan of {make_url(url).render_as_string(hide_password=True)}",
                    "a database error, so its rows were not checked for keys", f"{exc.__class__.__name__}: {reason}"))

    async def _scan_database(self, url: str, ring: KeyRing) -> None:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                for table in TABLES:
                    for row in (await conn.execute(text(f"SELECT * FROM {table}"))).mappings():
                        self.counts["rows"] += 1
                        self.see(f"a row of {table}", repr(dict(row)))
            async with async_sessionmaker(engine)() as session:
                for config in (await session.execute(select(LLMConfiguration))).scalars():
                    self.ciphertexts.add(config.api_key_encrypted)
                    try:
                        key = await decrypt_configuration_key(session, keyring=ring, configuration=config)
                    except CryptoError:
                        continue  # a test that stored what its ring cannot open
                    if len(key) >= MIN_HARVESTED and len(set(key)) >= MIN_DISTINCT:
                        self.registry.add(key, f"stored by the gateway as configuration {config.name!r}")
        finally:
            await engine.dispose()

    def findings(self) -> list[Finding]:
        """Every watched key wherever it was seen, and stored ciphertext in any answer."""
        seen = self.texts + [(r.where, r.text()) for r in self.responses]
        keys = self.registry.items()
        found = [Finding(where, "an Authorization header with a gateway token", "") for where in self.token_lines]
        found += self.scan_errors
        for where, text_ in seen:
            for key, origin in keys:
                at = text_.find(key)
                if at >= 0 and not self._allowed(where, key):
                    what = f"key {fingerprint(key)} made by {origin.maker} in {origin.test}"
                    found.append(Finding(where, what, self._redacted(text_, at, len(key), keys)))
        for recorded in self.responses:
            body = recorded.text()
            for ciphertext in self.ciphertexts:
                at = body.find(ciphertext.split(".")[-1])
                if at >= 0:
                    found.append(Finding(recorded.where, "a stored ciphertext", body[max(0, at - CONTEXT):at]))
        return found

    def redact(self, seen: str) -> str:
        """`seen` with every watched key replaced by <KEY> (for what pytest prints of a failed test)."""
        for key, _ in self.registry.items():
            seen = seen.replace(key, "<KEY>")
        return seen

    @staticmethod
    def _redacted(seen: str, at: int, length: int, keys: list[tuple[str, Origin]]) -> str:
        context = seen[max(0, at - CONTEXT):at] + "<KEY>" + seen[at + length:at + length + CONTEXT]
        for key, _ in keys:
            context = context.replace(key, "<KEY>")
        return context.replace("\n", "\\n")


class LogSink(Protocol):
    """What a WatchHandler feeds: this module's watch, or the admin tests' package-wide one."""

    def log(self, record: logging.LogRecord, line: str) -> None:
        """One formatted record."""


class WatchHandler(logging.Handler):
    """Hands every log record (tracebacks included) to the watch."""

    def __init__(self, watch: LogSink) -> None:
        super().__init__(level=logging.DEBUG)
        self.watch = watch
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - a record whose args do not format: its raw parts are what could leak
            line = f"{record.msg!r} {record.args!r}"
        self.watch.log(record, line)


@dataclass
class Watching:
    """The watch of the running test with the log levels it raised (to put back)."""

    watch: LeakWatch
    handler: WatchHandler
    levels: dict[str, int]
    reports: list[Any] = field(default_factory=list)  # this test's pytest reports, redacted at the end


def start(test: str, registry: KeyRegistry = KEYS) -> Watching:
    """Before a test's setup: a fresh watch, fed by every logger at DEBUG."""
    registry.begin(test)
    watch = LeakWatch(registry)
    handler = WatchHandler(watch)
    names = ("", *CHATTY_LOGGERS)
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    return Watching(watch, handler, levels)


def stop(watching: Watching, captured: Iterable[tuple[str, str]]) -> list[Finding]:
    """After a test's teardown (the rows were read by the key_watch fixture): detach, read the captured output,
    and judge."""
    logging.getLogger().removeHandler(watching.handler)
    for name, level in watching.levels.items():
        logging.getLogger(name).setLevel(level)
    for section, content in captured:
        watching.watch.output(section, content)
    return watching.watch.findings()


def log_files(directory: Path | None) -> list[tuple[str, str]]:
    """The `*.log` files a test left in its tmp_path: what the gateways it ran as processes logged."""
    if directory is None:
        return []
    return [(f"the log file {path.relative_to(directory)}", path.read_text("utf-8", "replace"))
            for path in sorted(directory.rglob("*.log")) if path.is_file()]


def report(findings: list[Finding]) -> str:
    """The failure message: where, which key (as a hash) and who made it; never the key."""
    lines = [f"the key-leak watch (tests/leakwatch.py) found {len(findings)} leak(s):"]
    lines += [f"  - {finding}" for finding in findings[:20]]
    return "\n".join(lines)
