"""Team names and the labels `<team>/<name>` members' clients send (DESIGN §8): a label never silently starts
meaning another team. When a team gives up a name (renamed or deleted) the name is held for every user who was
a member then; while any of them exists no other team may take it (409), and their clients' old labels answer
404 naming what happened, never a newcomer's configuration. The team that gave a name up may take it back.
Knows nothing of HTTP."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.errors import Conflict, Unprocessable
from gateway.store.db import dialect_name, take_sqlite_write_lock
from gateway.store.models import TeamMember, TeamNameHold, utcnow
from gateway.validation import MAX_NAME, check_text


def check_team_name(name: str) -> str:
    """A team name: printable, at most 100 characters, no '/' (`<team>/<name>` selects a team configuration)."""
    check_text(name, param="name", max_length=MAX_NAME)
    if "/" in name:
        raise Unprocessable("Invalid 'name': a team name cannot contain '/'", param="name")
    return name


# PostgreSQL advisory lock id of team-name changes (any constant no other lock uses).
NAMES_LOCK = 0x7EA3_4A3E


async def _lock_names(session: AsyncSession) -> None:
    """Serialise team-name changes until commit: a creation reading no hold while a rename that gives the name
    up is in flight would otherwise wait on the renamed row's unique index and then take the name."""
    if dialect_name(session) == "sqlite":
        await take_sqlite_write_lock(session)
    else:
        await session.execute(select(func.pg_advisory_xact_lock(NAMES_LOCK)))


async def claim_name(session: AsyncSession, *, name: str, team_id: uuid.UUID) -> None:
    """409 when another team's former members hold `name`; a team taking back its own old name releases it."""
    await _lock_names(session)
    held = await session.execute(select(exists().where(TeamNameHold.name == name, TeamNameHold.team_id != team_id)))
    if held.scalar_one():
        raise Conflict("This team name was given up by another team and stays reserved for its former members' "
                       "clients; choose another name", param="name", code="team_name_reserved")
    await session.execute(delete(TeamNameHold).where(TeamNameHold.name == name, TeamNameHold.team_id == team_id))


async def hold_name(session: AsyncSession, *, name: str, team_id: uuid.UUID) -> None:
    """Hold the name a team is giving up for each of its current members (added to the session)."""
    await _lock_names(session)
    members = (await session.execute(select(TeamMember.user_id).where(TeamMember.team_id == team_id))).scalars()
    now = utcnow()
    for user_id in members:
        await session.merge(TeamNameHold(name=name, user_id=user_id, team_id=team_id, released_at=now))


async def held_names(session: AsyncSession, *, user_id: uuid.UUID) -> frozenset[str]:
    """The team names a user's clients may still send that no longer mean the team they meant."""
    return frozenset((await session.execute(
        select(TeamNameHold.name).where(TeamNameHold.user_id == user_id))).scalars())
