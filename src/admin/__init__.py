"""The admin API, a sub-app mounted at /api/ by gateway.app. May import gateway; gateway never imports admin."""

from __future__ import annotations

from aiohttp import web

from admin import (
    audit,
    backup,
    checks,
    configurations,
    conversations,
    encryption,
    invitations,
    legacy_migration,
    legacy_settings,
    operators,
    providers_api,
    team_configurations,
    team_usage,
    teams,
    teams_admin,
    templates,
    usage,
)
from admin.docs import setup_docs
from admin.openapi import openapi_registry
from admin.providers_api import ProviderListing
from admin.registry import ApiRegistry
from gateway.web.appkeys import PROVIDER_LISTING

# Each admin module owns one registry; the OpenAPI document covers all of them.
# Fixed paths before the configuration CRUD module's {id}: checks (/llm-configurations/test-all) and backup
# (/llm-configurations/export, /import) must never be read as a configuration id.
REGISTRIES: list[ApiRegistry] = [
    backup.api, legacy_settings.api, legacy_migration.api, encryption.api, operators.api, checks.api,
    conversations.api, usage.api, configurations.api, providers_api.api, audit.api, templates.api, teams.api,
    team_configurations.api, team_usage.api, invitations.api, teams_admin.api,
]


def create_admin_app() -> web.Application:
    """Build the admin sub-app; shared resources come from the parent through request.config_dict."""
    admin = web.Application()
    admin[PROVIDER_LISTING] = ProviderListing()
    for registry in [*REGISTRIES, openapi_registry(REGISTRIES)]:
        registry.install(admin)
    setup_docs(admin)
    return admin
