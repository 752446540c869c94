"""Teams and their members: who belongs, with which role, and the rules (a non-member sees nothing of a team,
a member may not do an owner's action, the last owner cannot leave or be demoted). Knows nothing of HTTP.

Every write announces `Change("teams", <user id>)` for each user whose view of the team changed (every member,
removed ones included), committed with the write by ChangeBus.commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounts import audit
from gateway.configurations.crud import lock_user
from gateway.crypto.keyring import KeyRing
from gateway.crypto.team_keys import create_team_key, shred_team_keys
from gateway.errors import Conflict, Forbidden, NotFound
from gateway.store.changes import Change
from gateway.store.db import dialect_name, take_sqlite_write_lock
from gateway.store.models import Team, TeamMember, utcnow
from gateway.teams.names import check_team_name, claim_name, hold_name

OWNER, MEMBER = "owner", "member"
ROLES = (OWNER, MEMBER)
CHANGE_KIND = "teams"


@dataclass(frozen=True)
class Membership:
    """A team as one user sees it."""

    team: Team
    role: str

    @property
    def is_owner(self) -> bool:
        """Whether the user may do an owner's actions."""
        return self.role == OWNER


def parse_id(value: uuid.UUID | str, *, missing: str) -> uuid.UUID:
    """An id from a path or body; anything that is not a UUID is something that does not exist (404 `missing`)."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(value)
    except ValueError:
        raise NotFound(missing) from None


async def member_ids(session: AsyncSession, *, team_id: uuid.UUID) -> list[uuid.UUID]:
    """Every member of the team (owners included)."""
    return list((await session.execute(
        select(TeamMember.user_id).where(TeamMember.team_id == team_id).order_by(TeamMember.user_id)
    )).scalars())


def changes_for(user_ids: list[uuid.UUID] | set[uuid.UUID]) -> list[Change]:
    """The notifications of a team write: one per affected user."""
    return [Change(CHANGE_KIND, str(u)) for u in sorted(user_ids, key=str)]


async def memberships(session: AsyncSession, *, user_id: uuid.UUID) -> dict[uuid.UUID, Membership]:
    """Every team of a user by id, with the user's role (the membership query the proxy uses)."""
    rows = (await session.execute(
        select(Team, TeamMember.role).join(TeamMember, TeamMember.team_id == Team.id)
        .where(TeamMember.user_id == user_id)
    )).all()
    return {team.id: Membership(team, role) for team, role in rows}


async def membership(session: AsyncSession, *, user_id: uuid.UUID, team_id: uuid.UUID | str,
                     owner: bool = False, for_update: bool = False) -> Membership:
    """The caller's membership of a team: 404 when not a member (as for an unknown team), 403 when `owner` is
    asked of a member."""
    tid = parse_id(team_id, missing="No team with this id")
    query = (select(Team, TeamMember.role).join(TeamMember, TeamMember.team_id == Team.id)
             .where(Team.id == tid, TeamMember.user_id == user_id))
    if for_update:
        query = query.with_for_update(of=Team)
    found = (await session.execute(query)).first()
    if found is None:
        raise NotFound("No team with this id")
    result = Membership(found[0], found[1])
    if owner and not result.is_owner:
        raise Forbidden("Only an owner of the team may do this", code="team_owner_required")
    return result


async def lock_team(session: AsyncSession, *, team_id: uuid.UUID) -> None:
    """Serialise writes to one team's members (the last-owner rule reads, then writes)."""
    if dialect_name(session) == "sqlite":
        await take_sqlite_write_lock(session)
    else:
        await session.execute(select(Team.id).where(Team.id == team_id).with_for_update())


async def _flush_team_name(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict("A team with this name already exists", param="name", code="duplicate_team_name") from None


async def check_team_room(session: AsyncSession, *, user_id: uuid.UUID, max_teams: int) -> None:
    """409 when the user already belongs to `max_teams` teams (each team brings up to its own configuration
    limit, so teams must not be a way around the per-user one). Takes the user's lock first: two joins or
    creations at once must not both count the same teams."""
    await lock_user(session, user_id=user_id)
    count = (await session.execute(
        select(func.count()).select_from(TeamMember).where(TeamMember.user_id == user_id))).scalar_one()
    if count >= max_teams:
        raise Conflict(f"This user already belongs to {count} teams, the most allowed (MAX_TEAMS_PER_USER)",
                       code="too_many_teams")


async def create_team(session: AsyncSession, *, keyring: KeyRing, user_id: uuid.UUID, actor: str,
                      name: str, max_teams: int) -> Team:
    """A new team owned by the caller, with its data key (flushed, not committed); 409 when the caller is in
    `max_teams` teams already or the name is taken or held."""
    check_team_name(name)
    await check_team_room(session, user_id=user_id, max_teams=max_teams)
    team = Team(id=uuid.uuid4(), name=name, created_at=utcnow())
    await claim_name(session, name=name, team_id=team.id)
    session.add(team)
    await _flush_team_name(session)
    session.add(TeamMember(team_id=team.id, user_id=user_id, role=OWNER, added_at=utcnow()))
    await create_team_key(session, keyring=keyring, team_id=team.id)
    audit.record(session, user_id=user_id, actor=actor, action="team.create", team_id=team.id)
    return team


async def list_teams(session: AsyncSession, *, user_id: uuid.UUID, limit: int = 100, offset: int = 0
                     ) -> tuple[list[tuple[Team, str, int]], int]:
    """One page of the caller's teams by name: (team, role, member count), and the total."""
    counts = (select(TeamMember.team_id, func.count().label("members")).group_by(TeamMember.team_id).subquery())
    base = select(Team, TeamMember.role, counts.c.members).join(TeamMember, TeamMember.team_id == Team.id).join(
        counts, counts.c.team_id == Team.id).where(TeamMember.user_id == user_id)
    total = (await session.execute(
        select(func.count()).select_from(TeamMember).where(TeamMember.user_id == user_id))).scalar_one()
    rows = (await session.execute(base.order_by(func.lower(Team.name), Team.id).limit(limit).offset(offset))).all()
    return [(team, role, members) for team, role, members in rows], total


async def rename_team(session: AsyncSession, *, user_id: uuid.UUID, actor: str, team_id: uuid.UUID | str,
                      name: str) -> Team:
    """Rename a team (owners)."""
    check_team_name(name)
    team = (await membership(session, user_id=user_id, team_id=team_id, owner=True, for_update=True)).team
    if team.name != name:
        await claim_name(session, name=name, team_id=team.id)
        await hold_name(session, name=team.name, team_id=team.id)
        team.name = name
        audit.record(session, user_id=user_id, actor=actor, action="team.rename", team_id=team.id)
        await _flush_team_name(session)
    return team


async def delete_team(session: AsyncSession, *, user_id: uuid.UUID, actor: str, team_id: uuid.UUID | str
                      ) -> list[uuid.UUID]:
    """Delete a team (owners): its data keys are destroyed first, then its configurations and members go with
    it. Returns the users who were members (to notify)."""
    team = (await membership(session, user_id=user_id, team_id=team_id, owner=True, for_update=True)).team
    members = await member_ids(session, team_id=team.id)
    await hold_name(session, name=team.name, team_id=team.id)
    # Crypto-shredding: without the data key no copy of the configuration rows can ever be decrypted.
    await shred_team_keys(session, team_id=team.id)
    audit.record(session, user_id=user_id, actor=actor, action="team.delete", team_id=team.id,
                 details={"name": team.name})
    await session.delete(team)
    await session.flush()
    return members
