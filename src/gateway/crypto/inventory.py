"""Which stored rows depend on which key: the ring keys in use, and team configurations whose data key is gone.

Two kinds of key id are stored, and they must not be mixed up: a personal configuration's `key_id` and a team
data key's `team_keys.key_id` name ring keys; a team configuration's `key_id` names a team data key
(`team_keys.id`), which the ring never holds."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.models import LLMConfiguration, Team, TeamKey


@dataclass(frozen=True)
class RingKeyUse:
    """What one ring key id still protects: personal configurations and wrapped team data keys."""

    key_id: str
    rows: int
    team_keys: int

    def describe(self) -> str:
        """E.g. "2 configurations and 1 team data key under key id 'k0'"."""
        parts = [f"{count} {noun}{'' if count == 1 else 's'}" for count, noun in
                 ((self.rows, "configuration"), (self.team_keys, "team data key")) if count]
        return f"{' and '.join(parts)} under key id {self.key_id!r}"


async def ring_key_use(session: AsyncSession) -> list[RingKeyUse]:
    """Every ring key id some row needs, by key id."""
    rows = dict((await session.execute(
        select(LLMConfiguration.key_id, func.count()).where(LLMConfiguration.team_id.is_(None))
        .group_by(LLMConfiguration.key_id)
    )).all())
    wrapped = dict((await session.execute(select(TeamKey.key_id, func.count()).group_by(TeamKey.key_id))).all())
    return [RingKeyUse(key_id, rows.get(key_id, 0), wrapped.get(key_id, 0))
            for key_id in sorted(set(rows) | set(wrapped))]


async def teams_missing_data_keys(session: AsyncSession) -> dict[str, int]:
    """Team name → how many of its configurations name a data key the team does not have (a damaged database:
    team deletion and team key rotation never leave one)."""
    query = (
        select(Team.name, func.count())
        .select_from(LLMConfiguration)
        .join(Team, Team.id == LLMConfiguration.team_id)
        .outerjoin(TeamKey, (TeamKey.id == LLMConfiguration.key_id) & (TeamKey.team_id == LLMConfiguration.team_id))
        .where(TeamKey.id.is_(None))
        .group_by(Team.name)
        .order_by(Team.name)
    )
    return dict((await session.execute(query)).all())
