"""Per-conversation configuration bindings: GET/PUT/DELETE /api/conversations/{id}/llm-configuration."""

from __future__ import annotations

import uuid
from datetime import datetime

from aiohttp import web
from pydantic import Field

from admin.registry import ApiRegistry
from admin.schemas import Public, StrictBody, json_response
from gateway.configurations.conversations import bind, get_binding, unbind
from gateway.errors import BadRequest, NotFound
from gateway.store.changes import Change
from gateway.teams.configurations import accessible
from gateway.web.appkeys import CHANGES, SESSIONMAKER
from gateway.web.auth import caller_of
from gateway.web.requests import parse_body

api = ApiRegistry(tag="conversations")
PATH = "/conversations/{conversation_id}/llm-configuration"
MAX_CONVERSATION_ID = 200


class BindingUpdate(StrictBody):
    configuration_id: uuid.UUID = Field(description="One of your configurations, or of a team you belong to")


class BindingPublic(Public):
    conversation_id: str
    configuration_id: uuid.UUID
    updated_at: datetime


def _conversation_id(request: web.Request) -> str:
    value = request.match_info["conversation_id"]
    if not 1 <= len(value) <= MAX_CONVERSATION_ID or not value.isprintable():
        raise BadRequest(f"conversation_id must be 1-{MAX_CONVERSATION_ID} printable characters",
                         param="conversation_id")
    return value



@api.route("GET", PATH, summary="The configuration a conversation is bound to", response=BindingPublic,
           errors=(400, 404))
async def get_binding_handler(request: web.Request) -> web.Response:
    user_id, conversation_id = caller_of(request).require_user(), _conversation_id(request)
    async with request.config_dict[SESSIONMAKER]() as session:
        binding = await get_binding(session, user_id=user_id, conversation_id=conversation_id)
    if binding is None:
        raise NotFound("This conversation is not bound to a configuration", param="conversation_id")
    return json_response(BindingPublic.model_validate(binding))


@api.route("PUT", PATH, summary="Bind a conversation to one of your (or your teams') configurations",
           body=BindingUpdate,
           response=BindingPublic, errors=(404,))
async def put_binding_handler(request: web.Request) -> web.Response:
    user_id, conversation_id = caller_of(request).require_user(), _conversation_id(request)
    body = await parse_body(request, BindingUpdate)
    async with request.config_dict[SESSIONMAKER]() as session:
        # Own configurations and those of the caller's teams; another user's or team's is the same 404.
        access = await accessible(session, user_id=user_id, configuration_id=body.configuration_id)
        binding = await bind(session, user_id=user_id, conversation_id=conversation_id,
                             configuration=access.configuration)
        public = BindingPublic.model_validate(binding)
        await request.config_dict[CHANGES].commit(session, Change("conversations", str(user_id)))
    return json_response(public)


@api.route("DELETE", PATH, summary="Remove a conversation's binding", status=204, errors=(400, 404))
async def delete_binding_handler(request: web.Request) -> web.Response:
    user_id, conversation_id = caller_of(request).require_user(), _conversation_id(request)
    async with request.config_dict[SESSIONMAKER]() as session:
        if not await unbind(session, user_id=user_id, conversation_id=conversation_id):
            raise NotFound("This conversation is not bound to a configuration", param="conversation_id")
        await request.config_dict[CHANGES].commit(session, Change("conversations", str(user_id)))
    return web.Response(status=204)
