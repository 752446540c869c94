"""The configurations a user may use through the proxy: their own, and those of the teams they are a member of
(with the wrapped data key each team row's ciphertext is under), read in one session for the proxy's cache."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.configurations.crud import list_user_configurations
from gateway.store.models import LLMConfiguration, TeamKey
from gateway.teams.defaults import team_default_id
from gateway.teams.membership import memberships
from gateway.teams.names import held_names


@dataclass(frozen=True)
class TeamRow:
    """A team configuration a member may use, with its team's name and the team key its key is encrypted under
    (None when that key is gone: the row cannot be decrypted)."""

    row: LLMConfiguration
    team_name: str
    team_key: TeamKey | None


@dataclass(frozen=True)
class Usable:
    """Everything a user may use: own rows, team rows, the teams they belong to, their member default."""

    own: list[LLMConfiguration]
    team_rows: list[TeamRow]
    teams: dict[uuid.UUID, str]  # team id → name, for every team the user is a member of
    member_default_id: uuid.UUID | None  # a team configuration chosen as the user's default
    held: frozenset[str] = frozenset()  # team names given up since the user's clients may have used them


async def team_rows(session: AsyncSession, *, team_ids: list[uuid.UUID], names: dict[uuid.UUID, str]
                    ) -> list[TeamRow]:
    """The configurations of these teams, each with the team key that encrypts it, by name."""
    query = (
        select(LLMConfiguration, TeamKey)
        .outerjoin(TeamKey, and_(TeamKey.id == LLMConfiguration.key_id, TeamKey.team_id == LLMConfiguration.team_id))
        .where(LLMConfiguration.team_id.in_(team_ids))
        .order_by(LLMConfiguration.name)
    )
    found = []
    for row, key in (await session.execute(query)).all():
        assert row.team_id is not None  # selected by team
        found.append(TeamRow(row, names[row.team_id], key))
    return found


async def usable_configurations(session: AsyncSession, *, user_id: uuid.UUID) -> Usable:
    """A user's own configurations and, when they belong to teams, their teams' and their member default.

    A user without teams costs two queries more than their own rows (memberships and held team names, each by
    an index), paid
    when the proxy's cache loads them, never per request."""
    own = await list_user_configurations(session, user_id=user_id)
    teams = {team_id: found.team.name for team_id, found in (await memberships(session, user_id=user_id)).items()}
    held = await held_names(session, user_id=user_id)
    if not teams:
        return Usable(own, [], {}, None, held)
    rows = await team_rows(session, team_ids=list(teams), names=teams)
    return Usable(own, rows, teams, await team_default_id(session, user_id=user_id), held)
