"""Per-conversation bindings: a conversation of a user pinned to one of the configurations that user may use."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.db import rows_affected
from gateway.store.models import ConversationConfiguration, LLMConfiguration, utcnow


async def get_binding(session: AsyncSession, *, user_id: uuid.UUID, conversation_id: str
                      ) -> ConversationConfiguration | None:
    """The binding of one conversation, or None."""
    return await session.get(ConversationConfiguration, (user_id, conversation_id))


async def bind(session: AsyncSession, *, user_id: uuid.UUID, conversation_id: str,
               configuration: LLMConfiguration) -> ConversationConfiguration:
    """Pin a conversation to a configuration the user may use: their own or their team's, as the caller found it
    (gateway.teams.configurations.accessible, a 404 for anything else); flushed, not committed."""
    binding = await get_binding(session, user_id=user_id, conversation_id=conversation_id)
    if binding is None:
        binding = ConversationConfiguration(user_id=user_id, conversation_id=conversation_id,
                                            configuration_id=configuration.id, updated_at=utcnow())
        session.add(binding)
    else:
        binding.configuration_id = configuration.id
        binding.updated_at = utcnow()
    await session.flush()
    return binding


async def unbind(session: AsyncSession, *, user_id: uuid.UUID, conversation_id: str) -> bool:
    """Remove a conversation's binding; False when there was none."""
    result = await session.execute(delete(ConversationConfiguration).where(
        ConversationConfiguration.user_id == user_id, ConversationConfiguration.conversation_id == conversation_id))
    return bool(rows_affected(result))


async def bound_configuration_id(session: AsyncSession, *, user_id: uuid.UUID, conversation_id: str
                                 ) -> uuid.UUID | None:
    """The configuration id a conversation is bound to (the proxy's cache loader)."""
    return (await session.execute(
        select(ConversationConfiguration.configuration_id).where(
            ConversationConfiguration.user_id == user_id,
            ConversationConfiguration.conversation_id == conversation_id,
        )
    )).scalar_one_or_none()
