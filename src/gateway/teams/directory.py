"""The operator's view of teams (the command line and /api/admin/teams): every team with its members, a team by
name, its owners. A member's view and its rules are membership.py and members.py; operators act through those
as one of the team's owners (`acting_owner`), so the same rules hold (the last owner's included)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.models import Team, TeamMember, User
from gateway.teams.membership import OWNER


@dataclass(frozen=True)
class TeamSummary:
    """One team as `teams list` shows it."""

    team: Team
    members: int
    owners: list[str]


async def all_teams(session: AsyncSession) -> list[TeamSummary]:
    """Every team by name, with its member count and its owners' names."""
    counts: dict[uuid.UUID, int] = dict((await session.execute(
        select(TeamMember.team_id, func.count()).group_by(TeamMember.team_id))).all())
    owners: dict[uuid.UUID, list[str]] = {}
    for team_id, name in (await session.execute(
        select(TeamMember.team_id, User.name).join(User, User.id == TeamMember.user_id)
        .where(TeamMember.role == OWNER).order_by(User.name)
    )).all():
        owners.setdefault(team_id, []).append(name)
    teams = (await session.execute(select(Team).order_by(func.lower(Team.name), Team.id))).scalars()
    return [TeamSummary(team, counts.get(team.id, 0), owners.get(team.id, [])) for team in teams]


async def team_by_name(session: AsyncSession, *, name: str) -> Team | None:
    """The team called `name`, if any."""
    return (await session.execute(select(Team).where(Team.name == name))).scalar_one_or_none()


async def roles(session: AsyncSession, *, team_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """Each member's role in the team, by user id."""
    rows = await session.execute(select(TeamMember.user_id, TeamMember.role).where(TeamMember.team_id == team_id))
    return dict(rows.all())


async def acting_owner(session: AsyncSession, *, team_id: uuid.UUID, not_: uuid.UUID | None = None
                       ) -> uuid.UUID | None:
    """An owner for an operator to act as (another one than `not_` when there is one); None when the team does
    not exist or has no owner."""
    owners = sorted((u for u, role in (await roles(session, team_id=team_id)).items() if role == OWNER),
                    key=lambda u: (u == not_, str(u)))
    return owners[0] if owners else None
