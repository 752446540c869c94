"""Application assembly: `create_app(settings)` builds everything; nothing is created at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.abc import AbstractResolver

from admin import create_admin_app
from admin.ui import setup_ui
from gateway.configurations.crud import Policy
from gateway.configurations.providers import ProviderCatalog
from gateway.crypto.keyring import KeyRing
from gateway.proxy import routes as proxy_routes
from gateway.proxy.admission import raise_open_file_limit
from gateway.proxy.translation.pool import WorkerPool
from gateway.settings import Settings
from gateway.ssrf import UrlPolicy
from gateway.store.changes import ChangeBus
from gateway.store.db import make_engine, make_sessionmaker
from gateway.templates.catalog import TemplateCatalog
from gateway.web import runtime_metrics
from gateway.web.appkeys import (
    CHANGES,
    ENGINE,
    HTTP_CLIENT,
    KEYRING,
    METRICS,
    POLICY,
    PROVIDERS,
    SESSIONMAKER,
    SETTINGS,
    TEMPLATES,
    TEST_LIMITER,
    TOKEN_CACHE,
    URL_POLICY,
)
from gateway.web.auth import TokenCache, gateway_middleware
from gateway.web.changes import change_log_ctx
from gateway.web.health import healthz, readyz
from gateway.web.legacy import legacy_ctx, read_through_middleware
from gateway.web.ratelimit import SlidingWindowLimiter
from gateway.web.resolver import guarded_session


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """The engine and session factory, disposed on shutdown."""
    engine = make_engine(app[SETTINGS].database_url)
    app[ENGINE] = engine
    app[SESSIONMAKER] = make_sessionmaker(engine)
    yield
    await engine.dispose()


def http_client_ctx(dns: AbstractResolver | None = None) -> Callable[[web.Application], AsyncIterator[None]]:
    """One upstream ClientSession per process: keep-alive pooling across all requests. Resolved addresses are
    checked against the URL policy by the resolver; URLs (IP literals, schemes) by the proxy before each call.
    `dns` replaces the system lookup under the policy check (tests make a name resolve to a private address)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        # The pool is as large as admission's slots (proxy/admission.py): a request that got a slot never
        # waits for a connection, unless a per-host limit is set lower.
        raise_open_file_limit(settings.upstream_max_connections)
        async with guarded_session(app[URL_POLICY], lookup=dns, max_connections=settings.upstream_max_connections,
                                   max_connections_per_host=settings.upstream_max_connections_per_host,
                                   connect_timeout_s=settings.upstream_connect_timeout_s,
                                   read_timeout_s=settings.upstream_timeout_s) as session:
            app[HTTP_CLIENT] = session
            yield

    return ctx


def create_app(settings: Settings, *, dns: AbstractResolver | None = None,
               translation_pool: WorkerPool | None = None) -> web.Application:
    """Build the gateway: middlewares, shared resources, probes, the admin sub-app at /api/, the page at /ui/.
    `dns`: the upstream name lookup under the SSRF check (default: the system's); `translation_pool`: translation
    workers its maker owns (the test suite's, one per session), used when they were made for these settings."""
    tokens = TokenCache()
    middlewares = [gateway_middleware(settings, tokens)]
    if settings.has_legacy_source:
        middlewares.append(read_through_middleware)
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[KEYRING] = KeyRing.from_entries(settings.key_ring_entries())
    bus = ChangeBus()
    app[CHANGES] = bus
    bus.subscribe(tokens.on_change)
    app[TOKEN_CACHE] = tokens
    catalog = ProviderCatalog.load(settings.providers_file)
    app[PROVIDERS] = catalog
    app[TEMPLATES] = TemplateCatalog.load(catalog, settings.templates_file)
    # Where the gateway may send requests: one object, asked on save, before each send and at connect time.
    app[URL_POLICY] = UrlPolicy.from_settings(settings)
    app[POLICY] = Policy(catalog=catalog, urls=app[URL_POLICY], max_per_user=settings.max_configurations_per_user,
                    max_per_team=settings.max_configurations_per_team)
    # Tests cost the user money: a per-user budget (in memory, per process).
    app[TEST_LIMITER] = SlidingWindowLimiter(limit=settings.tests_per_minute, window_s=60.0)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(change_log_ctx)
    app.cleanup_ctx.append(http_client_ctx(dns))
    app.cleanup_ctx.append(legacy_ctx)
    proxy_routes.setup(app, dns=dns, translation_pool=translation_pool)
    runtime_metrics.register(app, app[METRICS].registry)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.add_subapp("/api/", create_admin_app())
    setup_ui(app)
    return app
