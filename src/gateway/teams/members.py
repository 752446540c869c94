"""A team's members: listed by members, added directly by operators (owners invite: invitations.py), re-roled
and removed by owners (a member may remove itself); the last owner can neither leave nor be demoted. Knows
nothing of HTTP."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounts import audit
from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.store.models import TeamInvitation, TeamMember, User, utcnow
from gateway.teams.configurations import drop_member_bindings
from gateway.teams.membership import MEMBER, OWNER, ROLES, check_team_room, lock_team, membership, parse_id


@dataclass(frozen=True)
class Member:
    """One member as the members list shows it."""

    user_id: uuid.UUID
    name: str
    role: str
    added_at: object


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise Unprocessable("Invalid 'role': use 'owner' or 'member'", param="role")
    return role


async def list_members(session: AsyncSession, *, user_id: uuid.UUID, team_id: uuid.UUID | str) -> list[Member]:
    """The team's members, owners first, then by name (members and owners may list)."""
    team = (await membership(session, user_id=user_id, team_id=team_id)).team
    rows = (await session.execute(
        select(TeamMember.user_id, User.name, TeamMember.role, TeamMember.added_at)
        .join(User, User.id == TeamMember.user_id).where(TeamMember.team_id == team.id)
        .order_by((TeamMember.role == OWNER).desc(), User.name)
    )).all()
    return [Member(*row) for row in rows]


async def _member_row(session: AsyncSession, *, team_id: uuid.UUID, user_id: uuid.UUID) -> TeamMember:
    row = await session.get(TeamMember, (team_id, user_id))
    if row is None:
        raise NotFound("No member with this id")
    return row


async def _owners(session: AsyncSession, *, team_id: uuid.UUID) -> int:
    return (await session.execute(select(func.count()).select_from(TeamMember).where(
        TeamMember.team_id == team_id, TeamMember.role == OWNER))).scalar_one()


async def add_member(session: AsyncSession, *, user_id: uuid.UUID, actor: str, team_id: uuid.UUID | str,
                     user_name: str, role: str = MEMBER, max_teams: int) -> Member:
    """Add a user straight in, without an invitation: the operator's way (CLI `teams add-member`, acting as an
    owner); owners invite (invitations.py). An unknown name is a 404, a member already there 409, a user in
    `max_teams` teams 409; a pending invitation of the user to the team is dropped."""
    _check_role(role)
    team = (await membership(session, user_id=user_id, team_id=team_id, owner=True)).team
    await lock_team(session, team_id=team.id)
    user = (await session.execute(select(User).where(User.name == user_name))).scalar_one_or_none()
    if user is None:
        raise NotFound("No user with this name", param="user")
    if await session.get(TeamMember, (team.id, user.id)) is not None:
        raise Conflict("This user is already a member of the team", param="user", code="already_member")
    await check_team_room(session, user_id=user.id, max_teams=max_teams)
    await session.execute(delete(TeamInvitation).where(TeamInvitation.team_id == team.id,
                                                       TeamInvitation.user_id == user.id))
    row = TeamMember(team_id=team.id, user_id=user.id, role=role, added_at=utcnow())
    session.add(row)
    audit.record(session, user_id=user_id, actor=actor, action="team.member_add", team_id=team.id,
                 details={"member": str(user.id), "role": role})
    await session.flush()
    return Member(user.id, user.name, role, row.added_at)


async def change_role(session: AsyncSession, *, user_id: uuid.UUID, actor: str, team_id: uuid.UUID | str,
                      member_id: uuid.UUID | str, role: str) -> Member:
    """Change a member's role (owners); demoting the last owner is a 409."""
    _check_role(role)
    team = (await membership(session, user_id=user_id, team_id=team_id, owner=True)).team
    await lock_team(session, team_id=team.id)
    row = await _member_row(session, team_id=team.id, user_id=parse_id(member_id, missing="No member with this id"))
    if row.role == OWNER and role != OWNER and await _owners(session, team_id=team.id) <= 1:
        raise Conflict("The last owner of a team cannot be demoted; make another member an owner first",
                       param="role", code="last_owner")
    if row.role != role:
        row.role = role
        audit.record(session, user_id=user_id, actor=actor, action="team.member_role", team_id=team.id,
                     details={"member": str(row.user_id), "role": role})
    await session.flush()
    name = (await session.execute(select(User.name).where(User.id == row.user_id))).scalar_one()
    return Member(row.user_id, name, row.role, row.added_at)


async def remove_member(session: AsyncSession, *, user_id: uuid.UUID, actor: str, team_id: uuid.UUID | str,
                        member_id: uuid.UUID | str) -> uuid.UUID:
    """Remove a member (owners, or a member removing itself); the last owner cannot leave (409). Their team
    default goes with the membership (member_defaults' foreign key), their conversation bindings to the team's
    configurations are dropped."""
    target = parse_id(member_id, missing="No member with this id")
    team = (await membership(session, user_id=user_id, team_id=team_id, owner=target != user_id)).team
    await lock_team(session, team_id=team.id)
    row = await _member_row(session, team_id=team.id, user_id=target)
    if row.role == OWNER and await _owners(session, team_id=team.id) <= 1:
        raise Conflict("The last owner of a team cannot leave it; make another member an owner, or delete the team",
                       code="last_owner")
    await session.delete(row)
    await drop_member_bindings(session, team_id=team.id, user_id=target)
    audit.record(session, user_id=user_id, actor=actor, action="team.member_remove", team_id=team.id,
                 details={"member": str(target)})
    await session.flush()
    return target
