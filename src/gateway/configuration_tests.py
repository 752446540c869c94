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
import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yarl import URL

from gateway.appkeys import CHANGES, HTTP_CLIENT, KEYRING, POLICY, SESSIONMAKER, SETTINGS, TEST_LIMITER
from gateway.changes import Change, ChangeBus
from gateway.configurations import Policy, check_api_key, check_provider_and_url, decrypt_key, get_configuration
from gateway.crypto import CryptoError, KeyRing
from gateway.errors import RateLimited, Unprocessable, UpstreamError, UpstreamTimeout
from gateway.keys import scrub
from gateway.models import AuditEvent, LLMConfiguration, utcnow
from gateway.probe import (
    KNOWN_CODES,
    STORED_STATUS,
    TestResult,
    classify_reply,
    classify_upstream_error,
    error_fields,
    probe_request,
)
from gateway.providers import Provider
from gateway.ratelimit import SlidingWindowLimiter
from gateway.ssrf import UnsafeURLError

ANTHROPIC_VERSION = "2023-06-01"
AUDIT_ACTION = "test"  # the admin audit log's action name
MAX_STORED_MESSAGE = 500
# Error-answer headers a verdict reads (Retry-After, and the providers' rate-limit reset times).
_KEPT_ERROR_HEADERS = ("retry-after", "retry-after-ms", "x-ratelimit-", "anthropic-ratelimit-", "ratelimit-")


# --- Stand-in for the proxy's gateway.proxy.forward (Target, UpstreamResult, send_once), same shapes. --------
# Replace by `from gateway.proxy.forward import Target, UpstreamResult, send_once` once the proxy is merged.


@dataclass(frozen=True, slots=True)
class Target:
    """Where one attempt goes; holds the key decrypted for this request only (never in its repr)."""

    provider: str
    wire: str
    litellm_provider: str
    base_url: str
    model: str
    api_key: str = field(repr=False)
    name: str = ""


@dataclass(frozen=True, slots=True)
class UpstreamResult:
    """A complete upstream answer."""

    status: int
    headers: dict[str, str]
    body: bytes


def _request_of(target: Target, path: str, body: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and body: OpenAI's wire as is, Anthropic's Messages API for the chat probe."""
    if target.wire == "anthropic":
        base = target.base_url.rstrip("/")
        url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        headers = {"x-api-key": target.api_key, "anthropic-version": ANTHROPIC_VERSION}
        fields = {k: body[k] for k in ("messages", "max_tokens") if k in body}
        return url, headers, {**fields, "model": target.model}
    if target.wire == "gemini":
        # Google's OpenAI-compatible surface accepts Gemini keys as bearer tokens.
        url = target.base_url.rstrip("/") + "/v1beta/openai" + path
    else:
        url = target.base_url + path
    if target.provider == "azure":
        return url, {"api-key": target.api_key}, {**body, "model": target.model}
    return url, {"Authorization": f"Bearer {target.api_key}"}, {**body, "model": target.model}


def _error_of(status: int, raw: bytes, headers: Mapping[str, str], api_key: str) -> UpstreamError:
    codes, message = error_fields(raw)
    error = UpstreamError(scrub(message or f"The upstream answered HTTP {status}", api_key), status=status,
                          code=next(iter(sorted(codes & KNOWN_CODES)), "upstream_error"))
    error.headers = {k: v for k, v in headers.items() if k.lower().startswith(_KEPT_ERROR_HEADERS)}
    return error


async def send_once(
    http: aiohttp.ClientSession, target: Target, *, path: str, body: dict[str, Any], timeout_s: float,
) -> UpstreamResult:
    """Send one non-streamed request to the target, no failover; 2xx answers return, the rest raise
    UpstreamError (transport failures chained as its cause) or UpstreamTimeout."""
    url, headers, payload = _request_of(target, path, body)
    try:
        async with asyncio.timeout(timeout_s):
            async with http.post(url, data=orjson.dumps(payload), allow_redirects=False,
                                 headers={**headers, "Content-Type": "application/json"}) as response:
                raw = await response.read()
    except TimeoutError as exc:
        raise UpstreamTimeout("The upstream did not answer in time") from exc
    except (aiohttp.ClientError, UnsafeURLError) as exc:
        raise UpstreamError(f"Could not reach the upstream ({exc.__class__.__name__})",
                            code="upstream_unreachable") from exc
    if response.status >= 300:
        raise _error_of(response.status, raw, response.headers, target.api_key)
    return UpstreamResult(response.status, dict(response.headers), raw)


# --- End of the stand-in. ------------------------------------------------------------------------------------


class SavedTestResult(TestResult):
    """A saved configuration's verdict, as stored."""

    configuration_id: uuid.UUID
    name: str
    tested_at: datetime | None = None


def _host(base_url: str) -> str:
    """The upstream host, for messages (never the whole URL: its query may carry secrets)."""
    return URL(base_url).host or "the provider"


async def run_probe(http: aiohttp.ClientSession, target: Target, *, timeout_s: float) -> TestResult:
    """Test one target through the forwarding code and classify the outcome; never raises for upstream trouble."""
    probe = probe_request(target.model)
    started = time.perf_counter()
    try:
        reply = await send_once(http, target, path=probe.path, body=probe.body, timeout_s=timeout_s)
    except UpstreamError as exc:
        latency_ms = round((time.perf_counter() - started) * 1000)
        return classify_upstream_error(exc, model=target.model, api_key=target.api_key,
                                       host=_host(target.base_url), timeout_s=timeout_s, latency_ms=latency_ms)
    latency_ms = round((time.perf_counter() - started) * 1000)
    return classify_reply(reply.status, reply.headers, reply.body, model=target.model, api_key=target.api_key,
                          latency_ms=latency_ms)


def _target(entry: Provider, *, model: str, base_url: str, api_key: str, name: str = "") -> Target:
    return Target(provider=entry.id, wire=entry.wire, litellm_provider=entry.litellm_provider, base_url=base_url,
                  model=model, api_key=api_key, name=name)


def unsaved_target(policy: Policy, *, provider: str, model: str, api_key: str, base_url: str | None) -> Target:
    """A target from an unsaved configuration, validated like one being saved (422 naming the field)."""
    check_api_key(api_key)
    normalised = check_provider_and_url(policy, provider, base_url)
    entry = policy.catalog.get(provider)
    assert entry is not None  # check_provider_and_url refused unknown providers
    resolved = normalised or entry.base_url
    if resolved is None:
        raise Unprocessable(f"Field 'base_url' is required for provider '{provider}'", param="base_url")
    return _target(entry, model=model, base_url=resolved, api_key=api_key)


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
    return _target(entry, model=config.model, base_url=base_url, api_key=api_key, name=config.name)


async def store_result(
    session: AsyncSession, *, config: LLMConfiguration, result: TestResult, actor: str, source: str
) -> datetime | None:
    """Write the verdict on the row and an audit event, in the session's transaction; updated_at is kept (a
    test is not an edit). A copy of the row in this session sees the new values. None when the row is gone."""
    tested_at = utcnow()
    updated = await session.execute(
        update(LLMConfiguration)
        .where(LLMConfiguration.id == config.id, LLMConfiguration.user_id == config.user_id)
        .values(
            test_status=STORED_STATUS[result.status],
            test_message=result.message[:MAX_STORED_MESSAGE],
            test_latency_ms=result.latency_ms,
            tested_at=tested_at,
            updated_at=config.updated_at,
        )
        .execution_options(synchronize_session="evaluate")
    )
    if updated.rowcount == 0:
        return None
    record_test_audit(session, user_id=config.user_id, configuration_id=config.id, result=result, actor=actor,
                      source=source)
    return tested_at


def record_test_audit(
    session: AsyncSession, *, user_id: uuid.UUID, configuration_id: uuid.UUID, result: TestResult, actor: str,
    source: str,
) -> None:
    """The audit event of a test: the verdict's class, never its message (it quotes the provider)."""
    # TODO(lead): gateway.audit.record(session, ..., action="test", ...) once the admin branch is merged.
    details: dict[str, Any] = {
        "status": result.status, "upstream_status": result.upstream_status, "latency_ms": result.latency_ms,
        "source": source,
    }
    session.add(AuditEvent(user_id=user_id, actor=actor[:100], action=AUDIT_ACTION, configuration_id=configuration_id,
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
                         source: str = "test") -> SavedTestResult:
        """Test one of the caller's configurations and store the verdict (404 for another user's id)."""
        async with self.sessionmaker() as session:
            config = await get_configuration(session, user_id=user_id, configuration_id=configuration_id)
        self.limiter.require(user_id, what="configuration tests")
        async with self.sessionmaker() as session:
            return (await self._run_and_store(session, [config], actor=actor, source=source))[0]

    async def test_on_save(self, session: AsyncSession, config: LLMConfiguration, *, actor: str) -> SavedTestResult:
        """Test a configuration just saved (committed) in `session`, and store the verdict on `config` too.

        Over the test budget the save still stands: the verdict then says "rate_limited" and is not stored."""
        try:
            self.limiter.require(config.user_id, what="configuration tests")
        except RateLimited as exc:
            return SavedTestResult(success=False, status="rate_limited", message=f"Not tested: {exc.message}",
                                   retry_after_s=int(exc.headers["Retry-After"]), configuration_id=config.id,
                                   name=config.name)
        return (await self._run_and_store(session, [config], actor=actor, source="test_on_save"))[0]

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
        async with self.sessionmaker() as session:
            return await self._run_and_store(session, configs, actor=actor, source="test_all")

    async def _run_and_store(self, session: AsyncSession, configs: list[LLMConfiguration], *, actor: str,
                             source: str) -> list[SavedTestResult]:
        """Probe the configurations (no transaction open meanwhile), then store every verdict in one commit."""
        gate = asyncio.Semaphore(self.concurrency)

        async def one(config: LLMConfiguration) -> TestResult:
            target = saved_target(self.policy, self.keyring, config)
            if isinstance(target, TestResult):
                return target
            async with gate:
                return await run_probe(self.client, target, timeout_s=self.timeout_s)

        verdicts = await asyncio.gather(*(one(c) for c in configs))
        saved: list[SavedTestResult] = []
        for config, verdict in zip(configs, verdicts, strict=True):
            tested_at = await store_result(session, config=config, result=verdict, actor=actor, source=source)
            saved.append(SavedTestResult(**verdict.model_dump(), configuration_id=config.id, name=config.name,
                                         tested_at=tested_at))
        if configs:
            await self.changes.commit(session, Change("configurations", str(configs[0].user_id)))
        return saved
