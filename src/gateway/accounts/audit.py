"""The audit log: who did what to which configuration, and when. Never a key."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.models import AuditEvent, utcnow

# Actions: create, update, delete, set_default (admin API), test (configuration tests), legacy.migrated.
# Detail names that could only carry a secret; refused so no caller can put a key into the log by mistake.
SECRET_NAMES = frozenset({"api_key", "key", "api_key_encrypted", "secret", "token", "password", "authorization"})


def _check_details(details: dict[str, Any]) -> None:
    for name, value in details.items():
        if name.lower() in SECRET_NAMES:
            raise ValueError(f"audit details must not hold {name!r}")
        if isinstance(value, dict):
            _check_details(value)


def record(
    session: AsyncSession,
    *,
    user_id: uuid.UUID | None,
    actor: str,
    action: str,
    configuration_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
    team_id: uuid.UUID | None = None,
) -> AuditEvent:
    """Add an audit event to the session's transaction (it commits with the change it describes)."""
    details = details or {}
    _check_details(details)
    event = AuditEvent(user_id=user_id, actor=actor[:100], action=action, configuration_id=configuration_id,
                       team_id=team_id, details=details, created_at=utcnow())
    session.add(event)
    return event


async def list_events(
    session: AsyncSession,
    *,
    user_id: uuid.UUID | None,
    action: str | None = None,
    configuration_id: uuid.UUID | None = None,
    limit: int = 100,
    offset: int = 0,
    team_id: uuid.UUID | None = None,
) -> tuple[list[AuditEvent], int]:
    """One page of a user's audit events (or, with `team_id`, of a team's), newest first, and the total."""
    where = [AuditEvent.team_id == team_id] if team_id is not None else [AuditEvent.user_id == user_id]
    if action is not None:
        where.append(AuditEvent.action == action)
    if configuration_id is not None:
        where.append(AuditEvent.configuration_id == configuration_id)
    total = (await session.execute(select(func.count()).select_from(AuditEvent).where(*where))).scalar_one()
    query = (select(AuditEvent).where(*where).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
             .limit(limit).offset(offset))
    return list((await session.execute(query)).scalars()), total
