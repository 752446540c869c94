"""Operators manage any team (/api/admin/teams): list every team, rename or delete one, add a user directly (no
invitation: the operator's way, like CLI `teams add-member`), change roles, remove members, rotate its key, so
no team is ever beyond management. The team rules still hold: operators act through the same services as one
of the team's owners, and the audit names the operator as the actor."""

from __future__ import annotations

import uuid
from datetime import datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from admin.registry import UUID_PATTERN, ApiRegistry
from admin.schemas import Public, json_response
from admin.team_configurations import rotate_and_record
from admin.teams import MemberAdd, MemberPublic, MemberUpdate, TeamCreate, commit_team
from gateway.errors import NotFound
from gateway.store.changes import Change
from gateway.teams import members as team_members
from gateway.teams.directory import acting_owner, all_teams
from gateway.teams.membership import changes_for, delete_team, parse_id, rename_team
from gateway.teams.rotation import TeamRotationReport
from gateway.web.appkeys import CHANGES, SESSIONMAKER, SETTINGS
from gateway.web.auth import caller_of
from gateway.web.requests import parse_body

api = ApiRegistry(tag="operators")
BASE = "/admin/teams"
TEAM = BASE + "/{team_id:" + UUID_PATTERN + "}"
MEMBER = TEAM + "/members/{user_id:" + UUID_PATTERN + "}"
ERRORS = (403, 404)
NO_TEAM = "No team with this id"


class AdminTeam(Public):
    id: uuid.UUID
    name: str
    members: int
    owners: list[str]
    created_at: datetime


class AdminTeamList(Public):
    items: list[AdminTeam]
    total: int


async def _as_owner(request: web.Request, session: AsyncSession, *, not_: uuid.UUID | None = None
                    ) -> tuple[uuid.UUID, uuid.UUID, str]:
    """(team id, an owner to act as, the operator's name as actor)."""
    team_id = parse_id(request.match_info["team_id"], missing=NO_TEAM)
    owner = await acting_owner(session, team_id=team_id, not_=not_)
    if owner is None:
        raise NotFound(NO_TEAM)
    return team_id, owner, caller_of(request).user_name


@api.route("GET", BASE, summary="Every team, with its member count and owners", response=AdminTeamList,
           errors=(403,))
async def admin_list_teams_handler(request: web.Request) -> web.Response:
    async with request.config_dict[SESSIONMAKER]() as session:
        summaries = await all_teams(session)
    items = [AdminTeam(id=s.team.id, name=s.team.name, members=s.members, owners=s.owners,
                       created_at=s.team.created_at) for s in summaries]
    return json_response(AdminTeamList(items=items, total=len(items)))


@api.route("PATCH", TEAM, summary="Rename any team", body=TeamCreate, response=AdminTeam, errors=(*ERRORS, 409))
async def admin_rename_team_handler(request: web.Request) -> web.Response:
    body = await parse_body(request, TeamCreate)
    async with request.config_dict[SESSIONMAKER]() as session:
        team_id, owner, actor = await _as_owner(request, session)
        team = await rename_team(session, user_id=owner, actor=actor, team_id=team_id, name=body.name)
        await commit_team(request, session, team.id)
        summary = next(s for s in await all_teams(session) if s.team.id == team.id)
    return json_response(AdminTeam(id=team.id, name=team.name, members=summary.members, owners=summary.owners,
                                   created_at=team.created_at))


@api.route("DELETE", TEAM, summary="Delete any team (its data key is destroyed first)", status=204, errors=ERRORS)
async def admin_delete_team_handler(request: web.Request) -> web.Response:
    async with request.config_dict[SESSIONMAKER]() as session:
        team_id, owner, actor = await _as_owner(request, session)
        gone = await delete_team(session, user_id=owner, actor=actor, team_id=team_id)
        await request.config_dict[CHANGES].commit(session, *changes_for(gone),
                                                  *(Change("configurations", str(u)) for u in gone))
    return web.Response(status=204)


@api.route("POST", TEAM + "/members", summary="Add a user to any team directly, without an invitation",
           body=MemberAdd, response=MemberPublic, status=201, errors=(*ERRORS, 409))
async def admin_add_member_handler(request: web.Request) -> web.Response:
    body = await parse_body(request, MemberAdd)
    async with request.config_dict[SESSIONMAKER]() as session:
        team_id, owner, actor = await _as_owner(request, session)
        member = await team_members.add_member(session, user_id=owner, actor=actor, team_id=team_id,
                                               user_name=body.user, role=body.role,
                                               max_teams=request.config_dict[SETTINGS].max_teams_per_user)
        await commit_team(request, session, team_id)
    return json_response(MemberPublic.of(member), 201)


@api.route("PATCH", MEMBER, summary="Change a member's role in any team (the last owner cannot be demoted)",
           body=MemberUpdate, response=MemberPublic, errors=(*ERRORS, 409))
async def admin_change_role_handler(request: web.Request) -> web.Response:
    body = await parse_body(request, MemberUpdate)
    async with request.config_dict[SESSIONMAKER]() as session:
        team_id, owner, actor = await _as_owner(request, session)
        member = await team_members.change_role(session, user_id=owner, actor=actor, team_id=team_id,
                                                member_id=request.match_info["user_id"], role=body.role)
        await commit_team(request, session, team_id)
    return json_response(MemberPublic.of(member))


@api.route("DELETE", MEMBER, summary="Remove a member from any team (never its last owner)", status=204,
           errors=(*ERRORS, 409))
async def admin_remove_member_handler(request: web.Request) -> web.Response:
    target = parse_id(request.match_info["user_id"], missing="No member with this id")
    async with request.config_dict[SESSIONMAKER]() as session:
        team_id, owner, actor = await _as_owner(request, session, not_=target)
        removed = await team_members.remove_member(session, user_id=owner, actor=actor, team_id=team_id,
                                                   member_id=target)
        await commit_team(request, session, team_id, removed)
    return web.Response(status=204)


@api.route("POST", TEAM + "/rotate-key", summary="A new data key for any team, its configurations re-encrypted",
           response=TeamRotationReport, errors=ERRORS)
async def admin_rotate_team_key_handler(request: web.Request) -> web.Response:
    async with request.config_dict[SESSIONMAKER]() as session:
        team_id, _, actor = await _as_owner(request, session)
    return json_response(await rotate_and_record(request, team_id=team_id, user_id=None, actor=actor))
