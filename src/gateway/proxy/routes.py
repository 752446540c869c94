"""The /v1 endpoints and `setup(app)`, which gives the app the proxy's shared resources."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from aiohttp import web
from aiohttp.abc import AbstractResolver

from gateway.errors import NotFound
from gateway.proxy.admission import Admission
from gateway.proxy.cache import CachedConfiguration, ConfigurationCache
from gateway.proxy.context import proxy_context
from gateway.proxy.exchange import proxy
from gateway.proxy.failover import Cooldowns
from gateway.proxy.json_bodies import JsonBodies
from gateway.proxy.metrics import ProxyMetrics, metrics_handler
from gateway.proxy.translation import Translator
from gateway.proxy.translation.pool import WorkerPool
from gateway.proxy.usage import usage_ctx
from gateway.web.appkeys import (
    ADMISSION,
    CHANGES,
    CONFIG_CACHE,
    COOLDOWNS,
    JSON_BODIES,
    METRICS,
    PROVIDERS,
    SESSIONMAKER,
    SETTINGS,
    TRANSLATOR,
    URL_POLICY,
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
    data = [_model(c) for c in configurations.active()]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")


async def retrieve_model(request: web.Request) -> web.Response:
    """GET /v1/models/{id}: one of the configurations /v1/models lists, by the name it is selected by; anything
    else, another user's included, is the same 404 as an unknown name (OpenAI's `model_not_found`)."""
    user_id = caller_of(request).require_user()
    name = request.match_info["model"]
    configurations = await request.config_dict[CONFIG_CACHE].configurations(user_id)
    found = configurations.by_name.get(name)
    if found is None or not found.is_active:
        # Not the name back: another user's configuration answers byte for byte like a name nobody has.
        raise NotFound("The model does not exist or you do not have access to it", param="model",
                       code="model_not_found")
    return web.Response(body=orjson.dumps(_model(found)), content_type="application/json")


def _model(configuration: CachedConfiguration) -> dict[str, str | int]:
    """OpenAI's model object for a configuration."""
    return {"id": configuration.label, "object": "model", "created": configuration.created,
            "owned_by": configuration.provider}


async def cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """The configuration cache, subscribed to every change; it needs the sessionmaker, hence a cleanup_ctx."""
    settings = app[SETTINGS]
    cache = ConfigurationCache(app[SESSIONMAKER], app[PROVIDERS], urls=app[URL_POLICY],
                               binding_bytes=settings.binding_cache_bytes)
    app[CONFIG_CACHE] = cache
    app[CHANGES].subscribe(cache.on_change)
    yield


async def stop_translator(app: web.Application) -> None:
    """Stop the translation worker, if one was started."""
    await app[TRANSLATOR].close()


async def stop_json_parser(app: web.Application) -> None:
    """Stop the big JSON bodies' parser, if one was started."""
    app[JSON_BODIES].close()


def setup(app: web.Application, *, dns: AbstractResolver | None = None,
          translation_pool: WorkerPool | None = None) -> None:
    """Routes, metrics, cooldowns, caches, the usage writer and the change listener (after the database); `dns`:
    the upstream name lookup under the SSRF check (as the app's session's); `translation_pool`: see create_app."""
    settings = app[SETTINGS]
    app[METRICS] = ProxyMetrics()
    app[ADMISSION] = Admission.from_settings(settings, app[METRICS].registry)
    app[COOLDOWNS] = Cooldowns(threshold=settings.cooldown_failures, cooldown_s=settings.cooldown_s)
    # litellm's worker process, started by the first translated request; its lookups use the upstream DNS.
    app[TRANSLATOR] = Translator.from_settings(settings, urls=app[URL_POLICY], dns=dns, pool=translation_pool)
    app.on_cleanup.append(stop_translator)
    app[JSON_BODIES] = JsonBodies()
    app.on_cleanup.append(stop_json_parser)
    app.cleanup_ctx.append(cache_ctx)
    app.cleanup_ctx.append(usage_ctx)
    app.cleanup_ctx.append(listener_ctx)
    app.on_startup.append(proxy_context)  # after every cleanup context has started
    router = app.router
    router.add_post("/v1/chat/completions", chat_completions)
    router.add_post("/v1/completions", completions)
    router.add_post("/v1/embeddings", embeddings)
    router.add_post("/v1/responses", responses)
    router.add_get("/v1/models", list_models)
    # `.+`: a team configuration's id is `<team>/<name>`, which the openai SDK puts in the path as it is.
    router.add_get("/v1/models/{model:.+}", retrieve_model)
    router.add_post("/v1/{tail:.+}", passthrough)
    router.add_get("/metrics", metrics_handler)
