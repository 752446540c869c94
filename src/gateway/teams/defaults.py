"""One default per user, whichever kind: a personal configuration (`is_default` on the row) or a team
configuration of a team the user belongs to (the user's row in member_defaults). Setting one clears the other
under the user's lock (crud.lock_user), so two simultaneous switches leave exactly one default."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.configurations import crud
from gateway.store.db import rows_affected
from gateway.store.models import LLMConfiguration, MemberDefault, utcnow
from gateway.teams.configurations import Access, accessible


async def set_default(session: AsyncSession, *, user_id: uuid.UUID, configuration_id: uuid.UUID | str) -> Access:
    """Make a configuration the caller may use their only default (flushed, not committed)."""
    await crud.lock_user(session, user_id=user_id)
    access = await accessible(session, user_id=user_id, configuration_id=configuration_id, for_update=True)
    config = access.configuration
    if access.team is None:
        await crud.set_default(session, user_id=user_id, configuration_id=config.id)
        return access
    await session.execute(
        update(LLMConfiguration)
        .where(LLMConfiguration.user_id == user_id, LLMConfiguration.is_default.is_(True))
        .values(is_default=False, updated_at=utcnow())
    )
    await session.execute(delete(MemberDefault).where(MemberDefault.user_id == user_id))
    session.add(MemberDefault(user_id=user_id, team_id=config.team_id, configuration_id=config.id,
                              updated_at=utcnow()))
    await session.flush()
    return access


async def team_default_id(session: AsyncSession, *, user_id: uuid.UUID) -> uuid.UUID | None:
    """The team configuration that is the user's default, if any (gone with the membership or the row)."""
    return (await session.execute(
        select(MemberDefault.configuration_id).where(MemberDefault.user_id == user_id)
    )).scalar_one_or_none()


async def default_configuration_id(session: AsyncSession, *, user_id: uuid.UUID) -> uuid.UUID | None:
    """The user's one default: their personal default row, else their team default, else None."""
    personal = (await session.execute(select(LLMConfiguration.id).where(
        LLMConfiguration.user_id == user_id, LLMConfiguration.is_default.is_(True)))).scalar_one_or_none()
    return personal if personal is not None else await team_default_id(session, user_id=user_id)


async def clear_team_default(session: AsyncSession, *, user_id: uuid.UUID, configuration_id: uuid.UUID) -> bool:
    """Stop a team configuration being the user's default (PATCH is_default=false); whether it was."""
    result = await session.execute(delete(MemberDefault).where(
        MemberDefault.user_id == user_id, MemberDefault.configuration_id == configuration_id))
    return bool(rows_affected(result))
