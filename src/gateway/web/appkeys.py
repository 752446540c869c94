"""Every shared resource of the application has exactly one typed key here."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from admin.providers_api import ProviderListing
    from admin.ui import Asset
    from gateway.configurations.crud import Policy
    from gateway.configurations.providers import ProviderCatalog
    from gateway.crypto.keyring import KeyRing
    from gateway.legacy.migration import ReadThrough
    from gateway.legacy.source import LegacySource
    from gateway.proxy.admission import Admission
    from gateway.proxy.cache import ConfigurationCache
    from gateway.proxy.context import ProxyContext
    from gateway.proxy.failover import Cooldowns
    from gateway.proxy.json_bodies import JsonBodies
    from gateway.proxy.metrics import ProxyMetrics
    from gateway.proxy.translation import Translator
    from gateway.proxy.usage import UsageWriter
    from gateway.settings import Settings
    from gateway.ssrf import UrlPolicy
    from gateway.store.changes import ChangeBus
    from gateway.templates.catalog import TemplateCatalog
    from gateway.web.auth import TokenCache
    from gateway.web.ratelimit import SlidingWindowLimiter

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONMAKER: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("sessionmaker")
KEYRING: web.AppKey[KeyRing] = web.AppKey("keyring")
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
TOKEN_CACHE: web.AppKey[TokenCache] = web.AppKey("token_cache")
CHANGES: web.AppKey[ChangeBus] = web.AppKey("changes")
PROVIDERS: web.AppKey[ProviderCatalog] = web.AppKey("providers")
CONFIG_CACHE: web.AppKey[ConfigurationCache] = web.AppKey("config_cache")
COOLDOWNS: web.AppKey[Cooldowns] = web.AppKey("cooldowns")
USAGE: web.AppKey[UsageWriter] = web.AppKey("usage")
METRICS: web.AppKey[ProxyMetrics] = web.AppKey("metrics")
ADMISSION: web.AppKey[Admission] = web.AppKey("admission")
POLICY: web.AppKey[Policy] = web.AppKey("policy")
URL_POLICY: web.AppKey[UrlPolicy] = web.AppKey("url_policy")
TRANSLATOR: web.AppKey[Translator] = web.AppKey("translator")
PROXY: web.AppKey[ProxyContext] = web.AppKey("proxy")
JSON_BODIES: web.AppKey[JsonBodies] = web.AppKey("json_bodies")
PROVIDER_LISTING: web.AppKey[ProviderListing] = web.AppKey("provider_listing")
LEGACY_SOURCE: web.AppKey[LegacySource | None] = web.AppKey("legacy_source")
READ_THROUGH: web.AppKey[ReadThrough | None] = web.AppKey("read_through")
TEST_LIMITER: web.AppKey[SlidingWindowLimiter] = web.AppKey("test_limiter")
TEMPLATES: web.AppKey[TemplateCatalog] = web.AppKey("templates")
UI_ASSETS: web.AppKey[dict[str, Asset]] = web.AppKey("ui_assets")
