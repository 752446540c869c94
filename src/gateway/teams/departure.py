"""A user leaving for good (deleted by an operator, API or CLI): no team may be left without an owner. The
operator chooses what happens to a team whose last owner goes: `refuse` (409 naming the teams) or `transfer`
(the longest-standing other member becomes its owner, audited). Knows nothing of HTTP."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounts import audit
from gateway.accounts.users import delete_user
from gateway.errors import Conflict
from gateway.store.models import Team, TeamMember
from gateway.teams.membership import OWNER, lock_team

OnLastOwner = Literal["refuse", "transfer"]
ON_LAST_OWNER: tuple[OnLastOwner, ...] = ("refuse", "transfer")


async def _lock_owned(session: AsyncSession, *, user_id: uuid.UUID) -> None:
    """Lock every team the user owns before counting owners: two co-owners deleted at once must not each see
    the other still there (both went, and the team was left without an owner)."""
    owned = (await session.execute(select(TeamMember.team_id).where(
        TeamMember.user_id == user_id, TeamMember.role == OWNER).order_by(TeamMember.team_id))).scalars().all()
    for team_id in owned:  # in id order, so two deletions lock shared teams in the same order
        await lock_team(session, team_id=team_id)


async def _sole_owned(session: AsyncSession, *, user_id: uuid.UUID) -> list[Team]:
    """The teams of which the user is the only owner, by name."""
    owners = (select(TeamMember.team_id).where(TeamMember.role == OWNER).group_by(TeamMember.team_id)
              .having(func.count() == 1).subquery())
    return list((await session.execute(
        select(Team).join(TeamMember, TeamMember.team_id == Team.id).join(owners, owners.c.team_id == Team.id)
        .where(TeamMember.user_id == user_id, TeamMember.role == OWNER).order_by(Team.name)
    )).scalars())


def _names(teams: list[Team]) -> str:
    return ", ".join(f"'{team.name}'" for team in teams)


async def _successor(session: AsyncSession, *, team_id: uuid.UUID, leaving: uuid.UUID) -> TeamMember | None:
    return (await session.execute(
        select(TeamMember).where(TeamMember.team_id == team_id, TeamMember.user_id != leaving)
        .order_by(TeamMember.added_at, TeamMember.user_id).limit(1)
    )).scalar_one_or_none()


async def hand_over(session: AsyncSession, *, user_id: uuid.UUID, actor: str, on_last_owner: OnLastOwner
                    ) -> list[uuid.UUID]:
    """Make sure every team keeps an owner when `user_id` goes; the members of the user's teams (to notify)."""
    await _lock_owned(session, user_id=user_id)
    sole = await _sole_owned(session, user_id=user_id)
    if sole and on_last_owner == "refuse":
        raise Conflict(f"This user is the last owner of the team(s) {_names(sole)}; make another member an owner, "
                       "delete the team(s), or delete the user with on_last_owner=transfer", code="last_owner")
    successors = []
    for team in sole:
        successors.append((team, await _successor(session, team_id=team.id, leaving=user_id)))
    orphans = [team for team, successor in successors if successor is None]
    if orphans:
        raise Conflict(f"The team(s) {_names(orphans)} have no other member to become owner; delete them first",
                       code="last_owner")
    for team, successor in successors:
        assert successor is not None
        successor.role = OWNER
        audit.record(session, user_id=None, actor=actor, action="team.owner_transfer", team_id=team.id,
                     details={"from": str(user_id), "to": str(successor.user_id)})
    teams = select(TeamMember.team_id).where(TeamMember.user_id == user_id)
    return list((await session.execute(
        select(TeamMember.user_id).where(TeamMember.team_id.in_(teams)).distinct())).scalars())


async def delete_member_user(session: AsyncSession, *, user_id: uuid.UUID, actor: str,
                             on_last_owner: OnLastOwner = "refuse") -> list[uuid.UUID] | None:
    """Delete a user, every team keeping an owner; None when there is no such user, else the users whose view
    of a team changed (flushed, not committed)."""
    affected = await hand_over(session, user_id=user_id, actor=actor, on_last_owner=on_last_owner)
    if not await delete_user(session, user_id=user_id):
        return None
    await session.flush()
    return affected
