"""The admin API, a sub-app mounted at /api/ by the gateway."""

from __future__ import annotations

from aiohttp import web

from admin import backup, compat, encryption, migrations, operators
from admin.openapi import openapi_registry
from admin.registry import ApiRegistry

# Each admin module owns one registry; the OpenAPI document covers all of them. backup comes before the
# configuration CRUD module: /llm-configurations/export and /import must not be read as a configuration id.
REGISTRIES: list[ApiRegistry] = [backup.api, compat.api, migrations.api, encryption.api, operators.api]


def create_admin_app() -> web.Application:
    """Build the admin sub-app; shared resources come from the parent through request.config_dict."""
    admin = web.Application()
    for registry in [*REGISTRIES, openapi_registry(REGISTRIES)]:
        registry.install(admin)
    return admin
