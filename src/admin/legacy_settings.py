"""GET/POST /settings in the legacy OpenHands shape, backed by the caller's default configuration."""

from __future__ import annotations

from aiohttp import web

from admin.registry import ApiRegistry
from admin.schemas import json_response
from gateway.configurations.crud import default_configuration
from gateway.legacy.compat import LegacySettings, LegacySettingsUpdate, settings_view, write_settings
from gateway.store.changes import Change
from gateway.web.appkeys import CHANGES, KEYRING, POLICY, SESSIONMAKER
from gateway.web.auth import caller_of
from gateway.web.requests import parse_body

api = ApiRegistry(tag="compatibility")


@api.route("GET", "/settings", summary="Your default configuration in the legacy settings shape (never the key)",
           response=LegacySettings, errors=(403,))
async def get_settings_handler(request: web.Request) -> web.Response:
    user_id = caller_of(request).require_user()
    async with request.config_dict[SESSIONMAKER]() as session:
        config = await default_configuration(session, user_id=user_id)
        view = settings_view(request.config_dict[KEYRING], request.config_dict[POLICY].catalog, config)
    return json_response(view)


@api.route("POST", "/settings", summary="Update your default configuration from legacy settings; a posted-back "
           "mask keeps the stored key", body=LegacySettingsUpdate, response=LegacySettings, errors=(400, 403, 422))
async def post_settings_handler(request: web.Request) -> web.Response:
    user_id = caller_of(request).require_user()
    update = await parse_body(request, LegacySettingsUpdate)
    keyring, policy = request.config_dict[KEYRING], request.config_dict[POLICY]
    async with request.config_dict[SESSIONMAKER]() as session:
        config = await write_settings(session, keyring=keyring, policy=policy, user_id=user_id, update=update)
        view = settings_view(keyring, policy.catalog, config)
        await request.config_dict[CHANGES].commit(session, Change("configurations", str(user_id)))
    return json_response(view)
