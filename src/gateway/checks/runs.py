"""Testing configurations: one probe per configuration, its verdict stored on the row and in the audit log.

The upstream is called with the configuration's own key and model, once (no failover), under its own timeout
(TEST_TIMEOUT_S), and no usage is recorded. Database sessions are never held across the upstream call.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yarl import URL

from gateway.accounts import audit
from gateway.checks.probe import (
    STORED_STATUS,
    CheckResult,
    classify_reply,
    classify_upstream_error,
    probe_request,
)
from gateway.configurations.crud import Policy, check_api_key, check_provider_and_url, decrypt_key
from gateway.configurations.providers import Provider
from gateway.crypto.keyring import CryptoError, KeyRing
from gateway.errors import RateLimited, TranslationUnavailable, Unprocessable, UpstreamError
from gateway.proxy.dispatch import send_once
from gateway.proxy.forward import Target
from gateway.proxy.translation import Translator
from gateway.ssrf import UrlPolicy
from gateway.store.changes import Change, ChangeBus
from gateway.store.db import rows_affected
from gateway.store.models import LLMConfiguration, utcnow
from gateway.teams.configurations import KeyReader, accessible
from gateway.teams.membership import changes_for, member_ids
from gateway.web.appkeys import CHANGES, HTTP_CLIENT, KEYRING, POLICY, SESSIONMAKER, SETTINGS, TEST_LIMITER, TRANSLATOR
from gateway.web.ratelimit import SlidingWindowLimiter

AUDIT_ACTION = "test"  # the admin audit log's action name
MAX_STORED_MESSAGE = 500


class SavedCheckResult(CheckResult):
    """A saved configuration's verdict, as stored."""

    configuration_id: uuid.UUID
    name: str
    tested_at: datetime | None = None


def _host(base_url: str) -> str:
    """The upstream host, for messages (never the whole URL: its query may carry secrets)."""
    return URL(base_url).host or "the provider"


async def run_probe(
    http: aiohttp.ClientSession, target: Target, *, timeout_s: float, translator: Translator, urls: UrlPolicy
) -> CheckResult:
    """Test one target through the proxy's forwarding code and classify the outcome; never raises for upstream
    trouble."""
    probe = probe_request(target.model)
    if not target.is_openai_compatible:
        # The first translated call imports litellm (seconds): neither the test's timeout nor its latency.
        await translator.ready()
    started = time.perf_counter()
    try:
        reply = await send_once(http, target, path=probe.path, body=probe.body, timeout_s=timeout_s,
                                translator=translator, urls=urls)
    except TranslationUnavailable as exc:  # the gateway's worker failed: nothing is known of the provider
        return CheckResult(success=False, status="failed", message=exc.message)
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


def saved_target(policy: Policy, keyring: KeyRing, config: LLMConfiguration, api_key: str | None = None
                 ) -> Target | CheckResult:
    """The target of a stored configuration, or a failed verdict when it cannot be called at all. A team
    configuration's key is read beforehand (`api_key`: it needs its team's data key from the database)."""
    entry = policy.catalog.get(config.provider)
    base_url = config.base_url or (entry.base_url if entry else None)
    if entry is None or base_url is None:
        return CheckResult(success=False, status="failed",
                          message=f"Provider '{config.provider}' is not in the catalog or has no base URL")
    try:
        if api_key is None:
            api_key = decrypt_key(keyring, config)
    except CryptoError:
        return CheckResult(success=False, status="failed",
                          message="The stored key cannot be decrypted (encryption key missing from the key ring)")
    return _target(entry, model=config.model, base_url=base_url, api_key=api_key, name=config.name)


async def store_result(
    session: AsyncSession, *, config: LLMConfiguration, result: CheckResult, actor: str, source: str,
    tester: uuid.UUID | None = None,
) -> datetime | None:
    """Write the verdict on the row and an audit event, in the session's transaction; updated_at is kept (a
    test is not an edit). A copy of the row in this session sees the new values. None when the row is gone."""
    tested_at = utcnow()
    updated = await session.execute(
        update(LLMConfiguration)
        .where(LLMConfiguration.id == config.id)
        .values(
            test_status=STORED_STATUS[result.status],
            test_message=result.message[:MAX_STORED_MESSAGE],
            test_latency_ms=result.latency_ms,
            tested_at=tested_at,
            updated_at=config.updated_at,
        )
        .execution_options(synchronize_session="evaluate")
    )
    if rows_affected(updated) == 0:
        return None
    record_test_audit(session, user_id=config.user_id or tester, configuration_id=config.id, result=result,
                      actor=actor, source=source, team_id=config.team_id)
    return tested_at


def record_test_audit(
    session: AsyncSession, *, user_id: uuid.UUID | None, configuration_id: uuid.UUID, result: CheckResult, actor: str,
    source: str, team_id: uuid.UUID | None = None,
) -> None:
    """The audit event of a test: the verdict's class, never its message (it quotes the provider)."""
    details: dict[str, Any] = {
        "status": result.status, "upstream_status": result.upstream_status, "latency_ms": result.latency_ms,
        "source": source,
    }
    audit.record(session, user_id=user_id, actor=actor, action=AUDIT_ACTION, configuration_id=configuration_id,
                 details=details, team_id=team_id)


@dataclass(frozen=True)
class Checker:
    """The resources tests need, taken from the application."""

    sessionmaker: async_sessionmaker[AsyncSession]
    client: aiohttp.ClientSession
    keyring: KeyRing
    policy: Policy
    changes: ChangeBus
    limiter: SlidingWindowLimiter
    timeout_s: float
    concurrency: int
    translator: Translator

    @classmethod
    def of(cls, app: Mapping[Any, Any]) -> Checker:
        """Build from an application (or a request's config_dict)."""
        settings = app[SETTINGS]
        return cls(app[SESSIONMAKER], app[HTTP_CLIENT], app[KEYRING], app[POLICY], app[CHANGES], app[TEST_LIMITER],
                   settings.test_timeout_s, settings.test_concurrency, app[TRANSLATOR])

    async def test_unsaved(self, *, user_id: uuid.UUID, provider: str, model: str, api_key: str,
                           base_url: str | None) -> CheckResult:
        """Test a configuration that is not stored; nothing is written."""
        target = unsaved_target(self.policy, provider=provider, model=model, api_key=api_key, base_url=base_url)
        self.limiter.require(user_id, what="configuration tests")
        return await run_probe(self.client, target, timeout_s=self.timeout_s, translator=self.translator,
                               urls=self.policy.urls)

    async def test_saved(self, *, user_id: uuid.UUID, configuration_id: uuid.UUID | str, actor: str,
                         source: str = "test") -> SavedCheckResult:
        """Test one of the caller's configurations, or of the caller's teams, and store the verdict (404 for
        anything else)."""
        async with self.sessionmaker() as session:
            config = (await accessible(session, user_id=user_id, configuration_id=configuration_id)).configuration
        self.limiter.require(user_id, what="configuration tests")
        async with self.sessionmaker() as session:
            return (await self._run_and_store(session, [config], actor=actor, source=source, tester=user_id))[0]

    async def test_on_save(self, session: AsyncSession, config: LLMConfiguration, *, actor: str,
                           tester: uuid.UUID | None = None) -> SavedCheckResult:
        """Test a configuration just saved (committed) in `session`, and store the verdict on `config` too.

        Over the test budget the save still stands: the verdict then says "rate_limited" and is not stored."""
        try:
            self.limiter.require(config.user_id or tester, what="configuration tests")
        except RateLimited as exc:
            return SavedCheckResult(success=False, status="rate_limited", message=f"Not tested: {exc.message}",
                                   retry_after_s=int(exc.headers["Retry-After"]), configuration_id=config.id,
                                   name=config.name)
        return (await self._run_and_store(session, [config], actor=actor, source="test_on_save", tester=tester))[0]

    async def test_all(self, *, user_id: uuid.UUID, actor: str) -> list[SavedCheckResult]:
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

    async def _team_keys(self, configs: list[LLMConfiguration]) -> dict[uuid.UUID, str]:
        """The keys of the team configurations among `configs`, read in a session of their own (closed before
        any upstream call)."""
        keys: dict[uuid.UUID, str] = {}
        if all(config.team_id is None for config in configs):
            return keys
        async with self.sessionmaker() as session:
            reader = KeyReader(session, self.keyring)
            for config in configs:
                try:
                    keys[config.id] = await reader.plaintext(config)
                except CryptoError:
                    continue  # reported as a failed verdict
        return keys

    async def _run_and_store(self, session: AsyncSession, configs: list[LLMConfiguration], *, actor: str,
                             source: str, tester: uuid.UUID | None = None) -> list[SavedCheckResult]:
        """Probe the configurations (no transaction open meanwhile), then store every verdict in one commit."""
        gate = asyncio.Semaphore(self.concurrency)
        keys = await self._team_keys(configs)

        async def one(config: LLMConfiguration) -> CheckResult:
            if config.team_id is not None and config.id not in keys:
                return CheckResult(success=False, status="failed", message="The stored key cannot be decrypted")
            target = saved_target(self.policy, self.keyring, config, keys.get(config.id))
            if isinstance(target, CheckResult):
                return target
            async with gate:
                return await run_probe(self.client, target, timeout_s=self.timeout_s, translator=self.translator,
                                       urls=self.policy.urls)

        verdicts = await asyncio.gather(*(one(c) for c in configs))
        saved: list[SavedCheckResult] = []
        for config, verdict in zip(configs, verdicts, strict=True):
            tested_at = await store_result(session, config=config, result=verdict, actor=actor, source=source,
                                           tester=tester)
            saved.append(SavedCheckResult(**verdict.model_dump(), configuration_id=config.id, name=config.name,
                                         tested_at=tested_at))
        if configs and configs[0].team_id is not None:
            members = await member_ids(session, team_id=configs[0].team_id)
            await self.changes.commit(session, *changes_for(members))
        elif configs:
            await self.changes.commit(session, Change("configurations", str(configs[0].user_id)))
        return saved
