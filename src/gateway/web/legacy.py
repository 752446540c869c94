"""The legacy room's place in the app: its migrator built from the app's resources, the configured source and
read-through for the app's life, and the middleware that migrates a user before their first request."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.helpers import ChainMapProxy

from gateway.legacy.migration import Migrator, ReadThrough
from gateway.legacy.source import configured_source
from gateway.web.appkeys import CHANGES, KEYRING, LEGACY_SOURCE, POLICY, READ_THROUGH, SESSIONMAKER, SETTINGS
from gateway.web.auth import CALLER
from gateway.web.responses import Handler


def app_migrator(config: web.Application | ChainMapProxy) -> Migrator:
    """The migrator built from an application's shared resources (an app or a request's config_dict)."""
    return Migrator(sessionmaker=config[SESSIONMAKER], keyring=config[KEYRING], policy=config[POLICY],
                    bus=config[CHANGES])


async def legacy_ctx(app: web.Application) -> AsyncIterator[None]:
    """The configured legacy source (if any) and its read-through, closed on shutdown."""
    source = configured_source(app[SETTINGS])
    app[LEGACY_SOURCE] = source
    app[READ_THROUGH] = ReadThrough(source) if source is not None else None
    yield
    if source is not None:
        await source.close()


@web.middleware
async def read_through_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Before a user's first request is served, migrate their legacy settings if they have no configuration."""
    read_through = request.config_dict[READ_THROUGH]
    caller = request.get(CALLER)
    if read_through is not None and caller is not None and caller.user_id is not None:
        await read_through.ensure(app_migrator(request.config_dict), user_id=caller.user_id, user=caller.user_name)
    return await handler(request)
