"""Testing configurations: one probe per configuration, its verdict stored on the row and in the audit log.

The upstream is called with the configuration's own key and model, once (no failover), under its own timeout
(TEST_TIMEOUT_S), and no usage is recorded. Database sessions are never held across the upstream call.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yarl import URL

from gateway.appkeys import CHANGES, HTTP_CLIENT, KEYRING, POLICY, SESSIONMAKER, SETTINGS, TEST_LIMITER
from gateway.changes import Change, ChangeBus
from gateway.configurations import Policy, check_api_key, check_provider_and_url, decrypt_key, get_configuration
from gateway.crypto import CryptoError, KeyRing
from gateway.errors import RateLimited, Unprocessable
from gateway.models import AuditEvent, LLMConfiguration, utcnow
from gateway.probe import STORED_STATUS, Probe, TestResult, classify_error, classify_reply, probe_request
from gateway.providers import Provider
from gateway.ratelimit import SlidingWindowLimiter
from gateway.ssrf import UnsafeURLError

ANTHROPIC_VERSION = "2023-06-01"
AUDIT_ACTION = "configuration.tested"
MAX_STORED_MESSAGE = 500
TESTABLE_WIRES = frozenset({"openai", "anthropic", "gemini"})


@dataclass(frozen=True)
class Target:
    """One configuration to call: its plaintext key lives here only for the duration of the test."""

    provider: Provider
    model: str
    base_url: str
    api_key: str = field(repr=False)
    configuration_id: uuid.UUID | None = None
    name: str | None = None

    @property
    def host(self) -> str:
        """The upstream host, for messages (never the full URL: it may carry a query with secrets)."""
        return URL(self.base_url).host or self.base_url


@dataclass(frozen=True)
class Reply:
    """An upstream answer, read in full."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class SavedTestResult(TestResult):
    """A saved configuration's verdict, as stored."""

    configuration_id: uuid.UUID
    name: str
    tested_at: datetime | None = None


def _url(target: Target, endpoint: str) -> URL:
    base = URL(target.base_url)
    path = base.path.rstrip("/")
    if target.provider.wire == "anthropic" and not path.endswith("/v1"):
        path += "/v1"
    elif target.provider.wire == "gemini" and not path.endswith("/openai"):
        path += "/v1beta/openai"  # Google's OpenAI-compatible surface for Gemini keys
    return base.with_path(f"{path}/{endpoint}").with_query(base.query)


def _headers(target: Target) -> dict[str, str]:
    if target.provider.wire == "anthropic":
        return {"x-api-key": target.api_key, "anthropic-version": ANTHROPIC_VERSION}
    if target.provider.id == "azure":
        return {"api-key": target.api_key}
    return {"Authorization": f"Bearer {target.api_key}"}


async def send_once(client: aiohttp.ClientSession, *, target: Target, probe: Probe, timeout_s: float) -> Reply:
    """Send one request to the target's upstream: no failover, no usage record, its own total timeout.

    Stand-in for the proxy's forwarding function until it is merged (same arguments, same Reply)."""
    async with asyncio.timeout(timeout_s):
        async with client.post(_url(target, probe.endpoint), json=probe.body, headers=_headers(target),
                               allow_redirects=False) as resp:
            body = await resp.read()
            return Reply(resp.status, CIMultiDictProxy(resp.headers), body)


async def run_probe(client: aiohttp.ClientSession, target: Target, *, timeout_s: float) -> TestResult:
    """Test one target and classify the outcome; never raises for upstream trouble."""
    probe = probe_request(target.model, wire=target.provider.wire)
    if target.provider.wire not in TESTABLE_WIRES:
        return TestResult(success=False, status="failed",
                          message=f"Testing is not supported for the '{target.provider.wire}' wire format")
    started = time.perf_counter()
    try:
        reply = await send_once(client, target=target, probe=probe, timeout_s=timeout_s)
    except (TimeoutError, aiohttp.ClientError, UnsafeURLError) as exc:
        return classify_error(exc, host=target.host, timeout_s=timeout_s, api_key=target.api_key)
    latency_ms = round((time.perf_counter() - started) * 1000)
    return classify_reply(reply.status, reply.headers, reply.body, model=target.model, api_key=target.api_key,
                          latency_ms=latency_ms)


def unsaved_target(policy: Policy, *, provider: str, model: str, api_key: str, base_url: str | None) -> Target:
    """A target from an unsaved configuration, validated like one being saved (422 naming the field)."""
    check_api_key(api_key)
    normalised = check_provider_and_url(policy, provider, base_url)
    entry = policy.catalog.get(provider)
    assert entry is not None  # check_provider_and_url refused unknown providers
    resolved = normalised or entry.base_url
    if resolved is None:
        raise Unprocessable(f"Field 'base_url' is required for provider '{provider}'", param="base_url")
    return Target(provider=entry, model=model, base_url=resolved, api_key=api_key)


def saved_target(policy: Policy, keyring: KeyRing, config: LLMConfiguration) -> Target | TestResult:
    """The target of a stored configuration, or a failed verdict when it cannot be called at all."""
    entry = policy.catalog.get(config.provider)
    base_url = config.base_url or (entry.base_url if entry else None)
    if entry is None or base_url is None:
        return TestResult(success=False, status="failed",
                          message=f"Provider '{config.provider}' is not in the catalog or has no base URL")
    try:
        api_key = decrypt_key(keyring, config)
    except CryptoError:
        return TestResult(success=False, status="failed",
                          message="The stored key cannot be decrypted (encryption key missing from the key ring)")
    return Target(provider=entry, model=config.model, base_url=base_url, api_key=api_key,
                  configuration_id=config.id, name=config.name)


async def store_result(
    session: AsyncSession, *, user_id: uuid.UUID, configuration_id: uuid.UUID, result: TestResult, actor: str,
    source: str,
) -> datetime | None:
    """Write the verdict on the row (updated_at untouched: a test is not an edit) and an audit event.

    Returns tested_at, or None when the configuration was deleted meanwhile."""
    tested_at = utcnow()
    updated = await session.execute(
        update(LLMConfiguration)
        .where(LLMConfiguration.id == configuration_id, LLMConfiguration.user_id == user_id)
        .values(
            test_status=STORED_STATUS[result.status],
            test_message=result.message[:MAX_STORED_MESSAGE],
            test_latency_ms=result.latency_ms,
            tested_at=tested_at,
            updated_at=LLMConfiguration.updated_at,
        )
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount == 0:
        return None
    record_test_audit(session, user_id=user_id, configuration_id=configuration_id, result=result, actor=actor,
                      source=source)
    return tested_at


def record_test_audit(
    session: AsyncSession, *, user_id: uuid.UUID, configuration_id: uuid.UUID, result: TestResult, actor: str,
    source: str,
) -> None:
    """The audit event of a test: the verdict's class, never its message (it quotes the provider)."""
    details: dict[str, Any] = {
        "status": result.status, "upstream_status": result.upstream_status, "latency_ms": result.latency_ms,
        "source": source,
    }
    session.add(AuditEvent(user_id=user_id, actor=actor, action=AUDIT_ACTION, configuration_id=configuration_id,
                           details=details, created_at=utcnow()))


@dataclass(frozen=True)
class Tester:
    """The resources tests need, taken from the application."""

    sessionmaker: async_sessionmaker[AsyncSession]
    client: aiohttp.ClientSession
    keyring: KeyRing
    policy: Policy
    changes: ChangeBus
    limiter: SlidingWindowLimiter
    timeout_s: float
    concurrency: int

    @classmethod
    def of(cls, app: Mapping[Any, Any]) -> Tester:
        """Build from an application (or a request's config_dict)."""
        settings = app[SETTINGS]
        return cls(app[SESSIONMAKER], app[HTTP_CLIENT], app[KEYRING], app[POLICY], app[CHANGES], app[TEST_LIMITER],
                   settings.test_timeout_s, settings.test_concurrency)

    async def test_unsaved(self, *, user_id: uuid.UUID, provider: str, model: str, api_key: str,
                           base_url: str | None) -> TestResult:
        """Test a configuration that is not stored; nothing is written."""
        target = unsaved_target(self.policy, provider=provider, model=model, api_key=api_key, base_url=base_url)
        self.limiter.require(user_id, what="configuration tests")
        return await run_probe(self.client, target, timeout_s=self.timeout_s)

    async def test_saved(self, *, user_id: uuid.UUID, configuration_id: uuid.UUID | str, actor: str,
                         source: str = "test", report_limit: bool = False) -> SavedTestResult:
        """Test one of the caller's configurations and store the verdict (404 for another user's id).

        Over the test budget: 429, or with `report_limit` an unstored "rate_limited" verdict (test on save,
        where the configuration itself was saved and the response must say so)."""
        async with self.sessionmaker() as session:
            config = await get_configuration(session, user_id=user_id, configuration_id=configuration_id)
        try:
            self.limiter.require(user_id, what="configuration tests")
        except RateLimited as exc:
            if not report_limit:
                raise
            return SavedTestResult(success=False, status="rate_limited", message=f"Not tested: {exc.message}",
                                   retry_after_s=int(exc.headers["Retry-After"]), configuration_id=config.id,
                                   name=config.name)
        return (await self._run_and_store(user_id, [config], actor=actor, source=source))[0]

    async def test_all(self, *, user_id: uuid.UUID, actor: str) -> list[SavedTestResult]:
        """Test every active configuration of the caller, `concurrency` at a time; store every verdict."""
        async with self.sessionmaker() as session:
            configs = list((await session.execute(
                select(LLMConfiguration)
                .where(LLMConfiguration.user_id == user_id, LLMConfiguration.is_active.is_(True))
                .order_by(LLMConfiguration.is_default.desc(), LLMConfiguration.name)
            )).scalars())
        if configs:
            self.limiter.require(user_id, len(configs), what="configuration tests")
        return await self._run_and_store(user_id, configs, actor=actor, source="test_all")

    async def _run_and_store(self, user_id: uuid.UUID, configs: list[LLMConfiguration], *, actor: str,
                             source: str) -> list[SavedTestResult]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(config: LLMConfiguration) -> TestResult:
            target = saved_target(self.policy, self.keyring, config)
            if isinstance(target, TestResult):
                return target
            async with gate:
                return await run_probe(self.client, target, timeout_s=self.timeout_s)

        verdicts = await asyncio.gather(*(one(c) for c in configs))
        saved: list[SavedTestResult] = []
        async with self.sessionmaker() as session:
            for config, verdict in zip(configs, verdicts, strict=True):
                tested_at = await store_result(session, user_id=user_id, configuration_id=config.id, result=verdict,
                                               actor=actor, source=source)
                saved.append(SavedTestResult(**verdict.model_dump(), configuration_id=config.id, name=config.name,
                                             tested_at=tested_at))
            await self.changes.commit(session, Change("configurations", str(user_id)))
        return saved
