"""Audit endpoint: the caller's own audit events, newest first."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import AfterValidator, BaseModel, Field

from admin.registry import ApiRegistry
from admin.schemas import Public, json_response, optional, printable
from gateway.accounts.audit import list_events
from gateway.web.appkeys import SESSIONMAKER
from gateway.web.auth import caller_of
from gateway.web.requests import parse_query

api = ApiRegistry(tag="audit")


class AuditQuery(BaseModel):
    action: Annotated[str, Field(min_length=1, max_length=50), AfterValidator(printable)] | None = optional(
        description="create, update, delete, set_default, test, legacy.migrated")
    configuration_id: uuid.UUID | None = optional()
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class AuditEventPublic(Public):
    id: int
    action: str
    actor: str
    configuration_id: uuid.UUID | None
    team_id: uuid.UUID | None = Field(default=None, description="The team the event belongs to, if any")
    details: dict[str, Any] = Field(description="What changed (field names, never key values)")
    created_at: datetime


class AuditEventList(Public):
    items: list[AuditEventPublic]
    total: int


@api.route("GET", "/audit-events", summary="Your audit events, newest first", query=AuditQuery,
           response=AuditEventList, errors=(400, 403))
async def list_audit_events_handler(request: web.Request) -> web.Response:
    user_id = caller_of(request).require_user()
    query = parse_query(request, AuditQuery)
    async with request.config_dict[SESSIONMAKER]() as session:
        events, total = await list_events(session, user_id=user_id, **query.model_dump())
    return json_response(AuditEventList(items=[AuditEventPublic.model_validate(e) for e in events], total=total))
