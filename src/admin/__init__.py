"""The admin API, a sub-app mounted at /api/ by the gateway."""

from __future__ import annotations

from aiohttp import web

from admin import operators, testing
from admin.openapi import openapi_registry
from admin.registry import ApiRegistry

# Each admin module owns one registry; the OpenAPI document covers all of them.
# testing before configurations: its fixed paths (/llm-configurations/test-all) must win over {id}.
REGISTRIES: list[ApiRegistry] = [operators.api, testing.api]


def create_admin_app() -> web.Application:
    """Build the admin sub-app; shared resources come from the parent through request.config_dict."""
    admin = web.Application()
    for registry in [*REGISTRIES, openapi_registry(REGISTRIES)]:
        registry.install(admin)
    return admin
