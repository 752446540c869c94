"""The proxy's shared resources as one object, looked up once per request (each app[KEY] is a Python call)."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web

from gateway.crypto.keyring import KeyRing
from gateway.proxy.admission import Admission
from gateway.proxy.cache import ConfigurationCache
from gateway.proxy.failover import Cooldowns
from gateway.proxy.json_bodies import JsonBodies
from gateway.proxy.metrics import ProxyMetrics
from gateway.proxy.translation import Translator
from gateway.proxy.usage import UsageWriter
from gateway.settings import Settings
from gateway.web.appkeys import (
    ADMISSION,
    CONFIG_CACHE,
    COOLDOWNS,
    HTTP_CLIENT,
    JSON_BODIES,
    KEYRING,
    METRICS,
    PROXY,
    SETTINGS,
    TRANSLATOR,
    USAGE,
)


@dataclass(frozen=True, slots=True)
class ProxyContext:
    """What a proxied request uses of the app; the same objects as under their app keys."""

    settings: Settings
    admission: Admission
    cache: ConfigurationCache
    cooldowns: Cooldowns
    metrics: ProxyMetrics
    keyring: KeyRing
    http: aiohttp.ClientSession
    translator: Translator
    usage: UsageWriter
    json_bodies: JsonBodies


async def proxy_context(app: web.Application) -> None:
    """On start-up, after the cleanup contexts made the session, the cache and the usage writer."""
    app[PROXY] = ProxyContext(app[SETTINGS], app[ADMISSION], app[CONFIG_CACHE], app[COOLDOWNS], app[METRICS],
                              app[KEYRING], app[HTTP_CLIENT], app[TRANSLATOR], app[USAGE], app[JSON_BODIES])
