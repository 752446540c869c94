"""Invitations (DESIGN §8): the invitee lists its pending invitations and accepts or declines one. Another user's
invitation, or an unknown id, is the same 404. An acceptance is a membership change like any other: announced
to every member (so every process serves the new member at once)."""

from __future__ import annotations

import uuid
from datetime import datetime

from aiohttp import web

from admin.registry import UUID_PATTERN, ApiRegistry
from admin.schemas import Public, json_response
from admin.teams import TeamPublic, commit_team, team_public
from gateway.teams.invitations import accept, decline, pending_for
from gateway.web.appkeys import SESSIONMAKER, SETTINGS
from gateway.web.auth import caller_of

api = ApiRegistry(tag="teams")
BASE = "/invitations"
ONE = BASE + "/{invitation_id:" + UUID_PATTERN + "}"


class InvitationTeam(Public):
    id: uuid.UUID
    name: str


class InvitationPublic(Public):
    id: uuid.UUID
    team: InvitationTeam
    role: str
    invited_by: str
    created_at: datetime


class InvitationList(Public):
    items: list[InvitationPublic]


@api.route("GET", BASE, summary="Your pending team invitations, newest first", response=InvitationList,
           errors=(403,))
async def list_invitations_handler(request: web.Request) -> web.Response:
    user_id = caller_of(request).require_user()
    async with request.config_dict[SESSIONMAKER]() as session:
        rows = await pending_for(session, user_id=user_id)
    return json_response(InvitationList(items=[InvitationPublic(
        id=i.id, team=InvitationTeam(id=i.team_id, name=i.team_name), role=i.role, invited_by=i.invited_by,
        created_at=i.created_at) for i in rows]))


@api.route("POST", ONE + "/accept", summary="Accept an invitation: you become a member of the team",
           response=TeamPublic, errors=(403, 404, 409))
async def accept_invitation_handler(request: web.Request) -> web.Response:
    caller = caller_of(request)
    user_id = caller.require_user()
    async with request.config_dict[SESSIONMAKER]() as session:
        team, role = await accept(session, user_id=user_id, actor=caller.user_name,
                                  invitation_id=request.match_info["invitation_id"],
                                  max_teams=request.config_dict[SETTINGS].max_teams_per_user)
        await commit_team(request, session, team.id)
        return json_response(await team_public(session, team, role))


@api.route("POST", ONE + "/decline", summary="Decline an invitation", status=204, errors=(403, 404))
async def decline_invitation_handler(request: web.Request) -> web.Response:
    caller = caller_of(request)
    user_id = caller.require_user()
    async with request.config_dict[SESSIONMAKER]() as session:
        await decline(session, user_id=user_id, actor=caller.user_name,
                      invitation_id=request.match_info["invitation_id"])
        await session.commit()
    return web.Response(status=204)
