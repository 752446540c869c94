"""Operator endpoints: users and their tokens (admin users or LLM_GATEWAY_ADMIN_TOKEN only)."""

from __future__ import annotations

import uuid
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field

from admin.registry import ApiRegistry
from admin.schemas import Public, StrictBody, json_response
from gateway.accounts.users import (
    UserName,
    create_user,
    get_user,
    issue_token,
    list_tokens,
    list_users,
    revoke_token,
    set_disabled,
)
from gateway.errors import NotFound
from gateway.store.changes import Change
from gateway.teams.departure import OnLastOwner, delete_member_user
from gateway.teams.membership import changes_for
from gateway.web.appkeys import CHANGES, SESSIONMAKER
from gateway.web.auth import caller_of
from gateway.web.requests import parse_body, parse_query

api = ApiRegistry(tag="operators")
OPERATOR_ERRORS = (403,)


class UserCreate(StrictBody):
    name: UserName
    is_admin: bool = False


class UserPublic(Public):
    id: uuid.UUID
    name: str
    is_admin: bool
    created_at: datetime
    disabled_at: datetime | None = Field(default=None, description="Set: the user's tokens are refused (401).")


class UserCreated(Public):
    id: uuid.UUID
    name: str
    is_admin: bool
    token: str = Field(description="Shown once; store it now.")


class UserList(Public):
    items: list[UserPublic]
    total: int


class TokenCreate(StrictBody):
    name: str = Field(default="default", min_length=1, max_length=100)
    expires_at: datetime | None = None


class TokenCreated(Public):
    id: uuid.UUID
    token: str = Field(description="Shown once; store it now.")
    prefix: str
    expires_at: datetime | None = None


class TokenPublic(Public):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenList(Public):
    items: list[TokenPublic]


def _uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"No {what} with this id") from None


@api.route("POST", "/admin/users", summary="Create a user and its first token", body=UserCreate,
           response=UserCreated, status=201, errors=(*OPERATOR_ERRORS, 409))
async def create_user_handler(request: web.Request) -> web.Response:
    body = await parse_body(request, UserCreate)
    async with request.config_dict[SESSIONMAKER]() as session:
        user = await create_user(session, name=body.name, is_admin=body.is_admin)
        _, token = await issue_token(session, user_id=user.id)
        await request.config_dict[CHANGES].commit(session, Change("users", str(user.id)))
    return json_response(UserCreated(id=user.id, name=user.name, is_admin=user.is_admin, token=token), 201)


@api.route("GET", "/admin/users", summary="List users", response=UserList, errors=OPERATOR_ERRORS)
async def list_users_handler(request: web.Request) -> web.Response:
    async with request.config_dict[SESSIONMAKER]() as session:
        users = await list_users(session)
    return json_response(UserList(items=[UserPublic.model_validate(u) for u in users], total=len(users)))


@api.route("POST", "/admin/users/{id}/tokens", summary="Issue another token for a user", body=TokenCreate,
           response=TokenCreated, status=201, errors=(*OPERATOR_ERRORS, 404))
async def create_token_handler(request: web.Request) -> web.Response:
    user_id = _uuid(request.match_info["id"], "user")
    body = await parse_body(request, TokenCreate)
    async with request.config_dict[SESSIONMAKER]() as session:
        if await get_user(session, user_id=user_id) is None:
            raise NotFound(f"No user with id '{user_id}'")
        row, token = await issue_token(session, user_id=user_id, name=body.name, expires_at=body.expires_at)
        await request.config_dict[CHANGES].commit(session, Change("tokens", str(user_id)))
    return json_response(TokenCreated(id=row.id, token=token, prefix=row.prefix, expires_at=row.expires_at), 201)


@api.route("GET", "/admin/users/{id}/tokens", summary="List a user's tokens (never the tokens themselves)",
           response=TokenList, errors=(*OPERATOR_ERRORS, 404))
async def list_tokens_handler(request: web.Request) -> web.Response:
    user_id = _uuid(request.match_info["id"], "user")
    async with request.config_dict[SESSIONMAKER]() as session:
        if await get_user(session, user_id=user_id) is None:
            raise NotFound(f"No user with id '{user_id}'")
        tokens = await list_tokens(session, user_id=user_id)
    return json_response(TokenList(items=[TokenPublic.model_validate(t) for t in tokens]))


@api.route("DELETE", "/admin/tokens/{id}", summary="Revoke a token", status=204, errors=(*OPERATOR_ERRORS, 404))
async def revoke_token_handler(request: web.Request) -> web.Response:
    token_id = _uuid(request.match_info["id"], "token")
    async with request.config_dict[SESSIONMAKER]() as session:
        token = await revoke_token(session, token_id=token_id)
        if token is None:
            raise NotFound(f"No token with id '{token_id}'")
        await request.config_dict[CHANGES].commit(session, Change("tokens", str(token.user_id)))
    return web.Response(status=204)


async def _set_disabled(request: web.Request, disabled: bool) -> web.Response:
    user_id = _uuid(request.match_info["id"], "user")
    async with request.config_dict[SESSIONMAKER]() as session:
        user = await get_user(session, user_id=user_id)
        if user is None:
            raise NotFound(f"No user with id '{user_id}'")
        await set_disabled(session, user=user, disabled=disabled)
        # The token caches of every process drop the user at once (the same path as a revoked token).
        await request.config_dict[CHANGES].commit(session, Change("users", str(user_id)))
    return json_response(UserPublic.model_validate(user))


@api.route("POST", "/admin/users/{id}/disable", summary="Disable a user: its tokens are refused until enabled",
           response=UserPublic, errors=(*OPERATOR_ERRORS, 404))
async def disable_user_handler(request: web.Request) -> web.Response:
    return await _set_disabled(request, True)


@api.route("POST", "/admin/users/{id}/enable", summary="Enable a disabled user", response=UserPublic,
           errors=(*OPERATOR_ERRORS, 404))
async def enable_user_handler(request: web.Request) -> web.Response:
    return await _set_disabled(request, False)


class UserDeleteQuery(BaseModel):
    on_last_owner: OnLastOwner = Field(
        default="refuse", description="When the user is a team's last owner: `refuse` (409 naming the teams) or "
        "`transfer` (the team's longest-standing other member becomes its owner)")


@api.route("DELETE", "/admin/users/{id}", summary="Delete a user with its tokens, configurations and personal "
           "usage; its teams keep their usage and audit, and an owner", query=UserDeleteQuery, status=204,
           errors=(*OPERATOR_ERRORS, 400, 404, 409))
async def delete_user_handler(request: web.Request) -> web.Response:
    user_id = _uuid(request.match_info["id"], "user")
    query = parse_query(request, UserDeleteQuery)
    async with request.config_dict[SESSIONMAKER]() as session:
        affected = await delete_member_user(session, user_id=user_id, actor=caller_of(request).user_name,
                                            on_last_owner=query.on_last_owner)
        if affected is None:
            raise NotFound(f"No user with id '{user_id}'")
        await request.config_dict[CHANGES].commit(session, Change("users", str(user_id)), *changes_for(affected))
    return web.Response(status=204)
