"""The /v1 endpoints and `setup(app)`, which gives the app the proxy's shared resources."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from gateway.proxy.admission import Admission
from gateway.proxy.cache import ConfigurationCache
from gateway.proxy.exchange import proxy
from gateway.proxy.failover import Cooldowns
from gateway.proxy.metrics import ProxyMetrics, metrics_handler
from gateway.proxy.translation import Translator
from gateway.proxy.usage import usage_ctx
from gateway.web.appkeys import (
    ADMISSION,
    CHANGES,
    CONFIG_CACHE,
    COOLDOWNS,
    METRICS,
    PROVIDERS,
    SESSIONMAKER,
    SETTINGS,
    TRANSLATOR,
)
from gateway.web.auth import caller_of
from gateway.web.changes import listener_ctx


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions."""
    return await proxy(request, "/chat/completions")


async def completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/completions."""
    return await proxy(request, "/completions")


async def embeddings(request: web.Request) -> web.StreamResponse:
    """POST /v1/embeddings."""
    return await proxy(request, "/embeddings")


async def responses(request: web.Request) -> web.StreamResponse:
    """POST /v1/responses."""
    return await proxy(request, "/responses")


async def passthrough(request: web.Request) -> web.StreamResponse:
    """Any other POST /v1/* path, forwarded as is to OpenAI-compatible providers."""
    return await proxy(request, "/" + request.match_info["tail"])


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models: the caller's active configurations, as OpenAI models named after them (`<team>/<name>`
    for their teams')."""
    user_id = caller_of(request).require_user()
    configurations = await request.config_dict[CONFIG_CACHE].configurations(user_id)
    data = [{"id": c.label, "object": "model", "created": c.created, "owned_by": c.provider}
            for c in configurations.active()]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")


async def cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """The configuration cache, subscribed to every change; it needs the sessionmaker, hence a cleanup_ctx."""
    settings = app[SETTINGS]
    cache = ConfigurationCache(app[SESSIONMAKER], app[PROVIDERS], allow_private=settings.allow_private_base_urls,
                               binding_bytes=settings.binding_cache_bytes)
    app[CONFIG_CACHE] = cache
    app[CHANGES].subscribe(cache.on_change)
    yield


def setup(app: web.Application) -> None:
    """Routes, metrics, cooldowns, caches, the usage writer and the change listener (after the database)."""
    settings = app[SETTINGS]
    app[METRICS] = ProxyMetrics()
    app[ADMISSION] = Admission.from_settings(settings, app[METRICS].registry)
    app[COOLDOWNS] = Cooldowns(threshold=settings.cooldown_failures, cooldown_s=settings.cooldown_s)
    app[TRANSLATOR] = Translator(timeout_s=settings.upstream_timeout_s,
                                 allow_private=settings.allow_private_base_urls,
                                 max_body_bytes=settings.max_upstream_body_bytes)
    app.cleanup_ctx.append(cache_ctx)
    app.cleanup_ctx.append(usage_ctx)
    app.cleanup_ctx.append(listener_ctx)
    router = app.router
    router.add_post("/v1/chat/completions", chat_completions)
    router.add_post("/v1/completions", completions)
    router.add_post("/v1/embeddings", embeddings)
    router.add_post("/v1/responses", responses)
    router.add_get("/v1/models", list_models)
    router.add_post("/v1/{tail:.+}", passthrough)
    router.add_get("/metrics", metrics_handler)
