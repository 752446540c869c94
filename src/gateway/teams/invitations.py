"""Membership by consent (DESIGN §8): an owner invites a user by name, the invitee accepts or declines. The
invitation answers the same whatever the name (an unknown user, a member already, a pending invitation), so an
owner learns nothing of which user names exist; the same queries run either way. Knows nothing of HTTP."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounts import audit
from gateway.errors import Conflict, NotFound
from gateway.store.models import Team, TeamInvitation, TeamMember, User, utcnow
from gateway.teams.membership import OWNER, check_team_room, lock_team, membership, parse_id

NO_INVITATION = "No invitation with this id"


@dataclass(frozen=True)
class Invitation:
    """A pending invitation as its invitee sees it."""

    id: uuid.UUID
    team_id: uuid.UUID
    team_name: str
    role: str
    invited_by: str
    created_at: datetime


async def invite(session: AsyncSession, *, user_id: uuid.UUID, actor: str, team_id: uuid.UUID | str,
                 user_name: str, role: str) -> uuid.UUID:
    """Invite a user by name into the team (owners; flushed, not committed). Nothing is said of whether the
    user exists: an unknown name, a member and an invitee already invited are all quietly accepted; inviting a
    pending invitee again sets the role and the inviter. The audit names what was asked, exists or not. Returns
    the team id."""
    team = (await membership(session, user_id=user_id, team_id=team_id, owner=True)).team
    await lock_team(session, team_id=team.id)
    found = (await session.execute(select(User.id).where(User.name == user_name))).scalar_one_or_none()
    # An unknown name runs the same lookups on an id nobody has, so both answers take the same time.
    target = found if found is not None else uuid.uuid4()
    member = await session.get(TeamMember, (team.id, target))
    pending = (await session.execute(select(TeamInvitation).where(
        TeamInvitation.team_id == team.id, TeamInvitation.user_id == target))).scalar_one_or_none()
    if pending is not None:  # the newest offer stands, and speaks for whoever made it
        pending.role, pending.invited_by = role, actor[:100]
    elif found is not None and member is None:
        session.add(TeamInvitation(id=uuid.uuid4(), team_id=team.id, user_id=found, role=role, invited_by=actor[:100],
                                   created_at=utcnow()))
    audit.record(session, user_id=user_id, actor=actor, action="team.member_invite", team_id=team.id,
                 details={"user": user_name, "role": role})
    await session.flush()
    return team.id


async def pending_for(session: AsyncSession, *, user_id: uuid.UUID) -> list[Invitation]:
    """The user's pending invitations, newest first."""
    rows = (await session.execute(
        select(TeamInvitation, Team.name).join(Team, Team.id == TeamInvitation.team_id)
        .where(TeamInvitation.user_id == user_id)
        .order_by(TeamInvitation.created_at.desc(), TeamInvitation.id)
    )).all()
    return [Invitation(row.id, row.team_id, name, row.role, row.invited_by, row.created_at) for row, name in rows]


async def _own_invitation(session: AsyncSession, *, user_id: uuid.UUID, invitation_id: uuid.UUID | str
                          ) -> TeamInvitation:
    """The invitee's own invitation; anyone else's, or an unknown id, is the same 404."""
    row = await session.get(TeamInvitation, parse_id(invitation_id, missing=NO_INVITATION))
    if row is None or row.user_id != user_id:
        raise NotFound(NO_INVITATION)
    return row


async def accept(session: AsyncSession, *, user_id: uuid.UUID, actor: str, invitation_id: uuid.UUID | str,
                 max_teams: int) -> tuple[Team, str]:
    """Accept an invitation: the user becomes a member with the invited role (flushed, not committed); over
    `max_teams` teams is a 409 and nothing changes. The team and the role."""
    row = await _own_invitation(session, user_id=user_id, invitation_id=invitation_id)
    await lock_team(session, team_id=row.team_id)
    team = await session.get(Team, row.team_id)
    assert team is not None  # the invitation goes with its team (foreign key)
    already = await session.get(TeamMember, (row.team_id, user_id))
    if already is not None:  # an operator added the user meanwhile: the invitation has nothing left to do
        await session.delete(row)
        await session.flush()
        return team, already.role
    # An invitation speaks for its inviter: once they are no longer an owner of the team (removed, demoted or
    # deleted), what they offered (a membership, perhaps ownership) is no longer the team's to give.
    inviter_role = await session.scalar(
        select(TeamMember.role).join(User, User.id == TeamMember.user_id)
        .where(TeamMember.team_id == row.team_id, User.name == row.invited_by))
    if inviter_role != OWNER:
        raise Conflict("This invitation was withdrawn: whoever sent it is no longer an owner of the team; ask an "
                       "owner to invite you again", code="invitation_withdrawn")
    await check_team_room(session, user_id=user_id, max_teams=max_teams)
    session.add(TeamMember(team_id=row.team_id, user_id=user_id, role=row.role, added_at=utcnow()))
    await session.delete(row)
    audit.record(session, user_id=user_id, actor=actor, action="team.member_join", team_id=row.team_id,
                 details={"member": str(user_id), "role": row.role, "invited_by": row.invited_by})
    await session.flush()
    return team, row.role


async def decline(session: AsyncSession, *, user_id: uuid.UUID, actor: str, invitation_id: uuid.UUID | str) -> None:
    """Decline an invitation: it is dropped, audited for the team (flushed, not committed)."""
    row = await _own_invitation(session, user_id=user_id, invitation_id=invitation_id)
    await session.execute(delete(TeamInvitation).where(TeamInvitation.id == row.id))
    audit.record(session, user_id=user_id, actor=actor, action="team.member_decline", team_id=row.team_id,
                 details={"user": str(user_id)})
    await session.flush()
