"""The admin API, a sub-app mounted at /api/ by the gateway."""

from __future__ import annotations

from aiohttp import web

from admin import backup, compat, conversations, encryption, migrations, operators, testing, usage
from admin.openapi import openapi_registry
from admin.registry import ApiRegistry

# Each admin module owns one registry; the OpenAPI document covers all of them.
# Fixed paths before the configuration CRUD module's {id}: testing (/llm-configurations/test-all) and backup
# (/llm-configurations/export, /import) must never be read as a configuration id.
REGISTRIES: list[ApiRegistry] = [backup.api, compat.api, migrations.api, encryption.api, operators.api, testing.api,
                                 conversations.api, usage.api]


def create_admin_app() -> web.Application:
    """Build the admin sub-app; shared resources come from the parent through request.config_dict."""
    admin = web.Application()
    for registry in [*REGISTRIES, openapi_registry(REGISTRIES)]:
        registry.install(admin)
    return admin
