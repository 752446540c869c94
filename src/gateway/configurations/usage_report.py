"""Usage totals over a period, for the whole of a user's traffic, one configuration, or a team's (all its members'
or one member's), optionally grouped."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.db import dialect_name
from gateway.store.models import LLMConfiguration, UsageRecord, User

GROUPS = ("configuration", "day", "member")
# The member group of a deleted user: its usage stays with the team, keyed by the name it had.
DELETED_USER = "deleted:"


@dataclass(frozen=True)
class UsageRow:
    """Totals of one group (or of everything; key None, also for requests that never reached a configuration)."""

    key: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    avg_latency_ms: float


def _day(session: AsyncSession) -> Any:
    column = UsageRecord.created_at
    if dialect_name(session) == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)  # SQLite holds the UTC timestamp as text


async def usage_rows(
    session: AsyncSession, *, user_id: uuid.UUID | None, since: datetime, until: datetime, group_by: str | None = None,
    configuration_id: uuid.UUID | None = None, team_id: uuid.UUID | None = None,
) -> list[UsageRow]:
    """Totals per group in [since, until) of one user's requests, or of the requests through one team's
    configurations (by every member when user_id is None); one row with key None when not grouped."""
    if user_id is None and team_id is None:
        raise ValueError("usage of whom: a user, a team, or both")
    measures = (
        func.count(),
        func.coalesce(func.sum(case((UsageRecord.status >= 400, 1), else_=0)), 0),
        func.coalesce(func.sum(UsageRecord.prompt_tokens), 0),
        func.coalesce(func.sum(UsageRecord.completion_tokens), 0),
        func.coalesce(func.sum(UsageRecord.cost_usd), 0.0),
        func.coalesce(func.avg(UsageRecord.latency_ms), 0.0),
    )
    key: Any = None
    if group_by == "configuration":
        key = UsageRecord.configuration_id
    elif group_by == "day":
        key = _day(session)
    elif group_by == "member":
        key = UsageRecord.user_id
    # A deleted member's rows have no user id any more: they are told apart by the name they kept.
    kept_name = [UsageRecord.user_name] if group_by == "member" else []
    query = select(*([key] if key is not None else []), *kept_name, *measures).where(
        UsageRecord.created_at >= since, UsageRecord.created_at < until)
    if user_id is not None:
        query = query.where(UsageRecord.user_id == user_id)
    if team_id is not None:
        query = query.where(UsageRecord.team_id == team_id)
    if configuration_id is not None:
        query = query.where(UsageRecord.configuration_id == configuration_id)
    if key is not None:
        query = query.group_by(key, *kept_name).order_by(key, *kept_name)
    rows = []
    for row in (await session.execute(query)).all():
        values = list(row)
        # Requests refused before a configuration was chosen have none: their group's key is None too.
        raw_key = values.pop(0) if key is not None else None
        name = values.pop(0) if kept_name else None
        group = str(raw_key) if raw_key is not None else (f"{DELETED_USER}{name}" if name is not None else None)
        requests, errors, prompt, completion, cost, latency = values
        rows.append(UsageRow(group, int(requests), int(errors), int(prompt), int(completion), float(cost),
                             round(float(latency), 1)))
    return rows



async def group_names(session: AsyncSession, *, group_by: str | None, keys: list[str]) -> dict[str, str]:
    """key → name of the groups of a report grouped by configuration or member (deleted ones are absent)."""
    ids = []
    for key in keys:
        try:
            ids.append(uuid.UUID(key))
        except ValueError:
            continue
    if group_by == "configuration":
        query = select(LLMConfiguration.id, LLMConfiguration.name).where(LLMConfiguration.id.in_(ids))
    elif group_by == "member":
        query = select(User.id, User.name).where(User.id.in_(ids))
    else:
        return {}
    gone = {key: key.removeprefix(DELETED_USER) for key in keys if key.startswith(DELETED_USER)}
    return gone | {str(found_id): name for found_id, name in (await session.execute(query)).all()}
