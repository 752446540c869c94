"""Team endpoints (DESIGN §8): teams and their members. Roles are the domain's (gateway.teams): a non-member
gets 404 for everything of a team, a member 403 for an owner's action. Every write is audited with the team and
announced as `Change("teams", <user id>)` to every affected user in the same commit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from aiohttp import web
from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from admin.registry import UUID_PATTERN, ApiRegistry
from admin.schemas import Public, StrictBody, json_response, printable
from gateway.store.changes import Change
from gateway.store.models import Team
from gateway.teams import members as team_members
from gateway.teams.invitations import invite
from gateway.teams.membership import (
    OWNER,
    changes_for,
    create_team,
    delete_team,
    list_teams,
    member_ids,
    membership,
    rename_team,
)
from gateway.web.appkeys import CHANGES, KEYRING, SESSIONMAKER, SETTINGS
from gateway.web.auth import caller_of
from gateway.web.requests import parse_body, parse_query

api = ApiRegistry(tag="teams")
BASE = "/teams"
TEAM = BASE + "/{team_id:" + UUID_PATTERN + "}"
MEMBER = TEAM + "/members/{user_id:" + UUID_PATTERN + "}"
USER_ERRORS = (403,)

TeamName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^/]*$",
                                description="Unique; no '/' (`<team>/<name>` selects a team configuration)"),
                     AfterValidator(printable)]
Role = Literal["owner", "member"]


class TeamCreate(StrictBody):
    name: TeamName


class TeamPublic(Public):
    id: uuid.UUID
    name: str
    role: Role = Field(description="Your role in the team")
    members: int
    created_at: datetime


class TeamList(Public):
    items: list[TeamPublic]
    total: int


class TeamQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class MemberAdd(StrictBody):
    user: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(printable)] = Field(
        description="The user's name")
    role: Role = "member"


class Invited(Public):
    status: Literal["invited"]
    message: str


# One answer for every name, so it says nothing of which users exist.
INVITED = Invited(status="invited", message="If this user exists and is not a member yet, they have a pending "
                  "invitation; they join the team when they accept it")


class MemberUpdate(StrictBody):
    role: Role


class MemberPublic(Public):
    user_id: uuid.UUID
    name: str
    role: Role
    added_at: datetime

    @classmethod
    def of(cls, member: team_members.Member) -> MemberPublic:
        """The public shape of one member."""
        return cls(user_id=member.user_id, name=member.name, role=member.role,
                   added_at=member.added_at)


class MemberList(Public):
    items: list[MemberPublic]


def _caller(request: web.Request) -> tuple[uuid.UUID, str]:
    caller = caller_of(request)
    return caller.require_user(), caller.user_name


async def commit_team(request: web.Request, session: AsyncSession, team_id: uuid.UUID,
                      *also: uuid.UUID) -> None:
    """Commit a team write, announced to its members and to `also` (members just removed)."""
    users = set(await member_ids(session, team_id=team_id)) | set(also)
    await request.config_dict[CHANGES].commit(session, *changes_for(users))


async def team_public(session: AsyncSession, team: Team, role: str) -> TeamPublic:
    count = len(await member_ids(session, team_id=team.id))
    return TeamPublic(id=team.id, name=team.name, role=role, members=count, created_at=team.created_at)


@api.route("POST", BASE, summary="Create a team; you are its owner", body=TeamCreate, response=TeamPublic,
           status=201, errors=(*USER_ERRORS, 409))
async def create_team_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    body = await parse_body(request, TeamCreate)
    async with request.config_dict[SESSIONMAKER]() as session:
        team = await create_team(session, keyring=request.config_dict[KEYRING], user_id=user_id, actor=actor,
                                 name=body.name, max_teams=request.config_dict[SETTINGS].max_teams_per_user)
        await commit_team(request, session, team.id)
        return json_response(await team_public(session, team, OWNER), 201)


@api.route("GET", BASE, summary="Your teams, by name", query=TeamQuery, response=TeamList,
           errors=(400, *USER_ERRORS))
async def list_teams_handler(request: web.Request) -> web.Response:
    user_id, _ = _caller(request)
    query = parse_query(request, TeamQuery)
    async with request.config_dict[SESSIONMAKER]() as session:
        rows, total = await list_teams(session, user_id=user_id, limit=query.limit, offset=query.offset)
    items = [TeamPublic(id=t.id, name=t.name, role=role, members=n, created_at=t.created_at) for t, role, n in rows]
    return json_response(TeamList(items=items, total=total))


@api.route("GET", TEAM, summary="One of your teams", response=TeamPublic, errors=(*USER_ERRORS, 404))
async def get_team_handler(request: web.Request) -> web.Response:
    user_id, _ = _caller(request)
    async with request.config_dict[SESSIONMAKER]() as session:
        found = await membership(session, user_id=user_id, team_id=request.match_info["team_id"])
        return json_response(await team_public(session, found.team, found.role))


@api.route("PATCH", TEAM, summary="Rename a team (owners)", body=TeamCreate, response=TeamPublic,
           errors=(*USER_ERRORS, 404, 409))
async def rename_team_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    body = await parse_body(request, TeamCreate)
    async with request.config_dict[SESSIONMAKER]() as session:
        team = await rename_team(session, user_id=user_id, actor=actor, team_id=request.match_info["team_id"],
                                 name=body.name)
        await commit_team(request, session, team.id)
        return json_response(await team_public(session, team, OWNER))


@api.route("DELETE", TEAM, summary="Delete a team (owners): its data key is destroyed first, then its "
           "configurations", status=204, errors=(*USER_ERRORS, 404))
async def delete_team_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    async with request.config_dict[SESSIONMAKER]() as session:
        gone = await delete_team(session, user_id=user_id, actor=actor, team_id=request.match_info["team_id"])
        await request.config_dict[CHANGES].commit(session, *changes_for(gone),
                                                  *(Change("configurations", str(u)) for u in gone))
    return web.Response(status=204)


@api.route("GET", TEAM + "/members", summary="The team's members, owners first", response=MemberList,
           errors=(*USER_ERRORS, 404))
async def list_members_handler(request: web.Request) -> web.Response:
    user_id, _ = _caller(request)
    async with request.config_dict[SESSIONMAKER]() as session:
        rows = await team_members.list_members(session, user_id=user_id, team_id=request.match_info["team_id"])
    return json_response(MemberList(items=[MemberPublic.of(m) for m in rows]))


@api.route("POST", TEAM + "/members", summary="Invite a user by name (owners): 202 whether or not the user exists; "
           "the user becomes a member on accepting (GET /api/invitations)", body=MemberAdd, response=Invited,
           status=202, errors=(*USER_ERRORS, 404))
async def invite_member_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    body = await parse_body(request, MemberAdd)
    async with request.config_dict[SESSIONMAKER]() as session:
        await invite(session, user_id=user_id, actor=actor, team_id=request.match_info["team_id"],
                     user_name=body.user, role=body.role)
        await session.commit()
    return json_response(INVITED, 202)


@api.route("PATCH", MEMBER, summary="Change a member's role (owners); the last owner cannot be demoted",
           body=MemberUpdate, response=MemberPublic, errors=(*USER_ERRORS, 404, 409))
async def change_role_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    body = await parse_body(request, MemberUpdate)
    async with request.config_dict[SESSIONMAKER]() as session:
        member = await team_members.change_role(session, user_id=user_id, actor=actor,
                                                team_id=request.match_info["team_id"],
                                                member_id=request.match_info["user_id"], role=body.role)
        await commit_team(request, session, uuid.UUID(request.match_info["team_id"]))
    return json_response(MemberPublic.of(member))


@api.route("DELETE", MEMBER, summary="Remove a member (owners; a member may remove itself); the last owner "
           "cannot leave", status=204, errors=(*USER_ERRORS, 404, 409))
async def remove_member_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    async with request.config_dict[SESSIONMAKER]() as session:
        removed = await team_members.remove_member(session, user_id=user_id, actor=actor,
                                                   team_id=request.match_info["team_id"],
                                                   member_id=request.match_info["user_id"])
        await commit_team(request, session, uuid.UUID(request.match_info["team_id"]), removed)
    return web.Response(status=204)
