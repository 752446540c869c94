"""Queries for users and their gateway tokens."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounts.tokens import display_prefix, hash_token, new_token
from gateway.errors import Conflict, Unprocessable
from gateway.store.db import rows_affected
from gateway.store.models import ApiToken, AuditEvent, UsageRecord, User, utcnow

# One rule for user names on every path (admin API, CLI, first start).
UserName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")]
_USER_NAME: TypeAdapter[str] = TypeAdapter(UserName)


def valid_user_name(name: str) -> str:
    """The name, or a 422 naming the rule (never the value)."""
    try:
        return _USER_NAME.validate_python(name)
    except ValidationError:
        raise Unprocessable("Invalid 'name': 1 to 100 letters, digits or . _ @ -", param="name") from None


async def create_user(session: AsyncSession, *, name: str, is_admin: bool = False) -> User:
    """Insert a user (flushed, not committed); a taken name is a 409."""
    user = User(id=uuid.uuid4(), name=name, is_admin=is_admin, created_at=utcnow())
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"A user named '{name}' already exists", param="name", code="duplicate_name") from None
    return user


async def get_user(session: AsyncSession, *, user_id: uuid.UUID) -> User | None:
    """One user by id."""
    return await session.get(User, user_id)


async def get_user_by_name(session: AsyncSession, *, name: str) -> User | None:
    """One user by name."""
    return (await session.execute(select(User).where(User.name == name))).scalar_one_or_none()


async def list_users(session: AsyncSession) -> list[User]:
    """Every user, oldest first."""
    return list((await session.execute(select(User).order_by(User.created_at, User.name))).scalars())


async def set_disabled(session: AsyncSession, *, user: User, disabled: bool) -> User:
    """Disable (its tokens are refused) or enable a user; idempotent, flushed, not committed."""
    if disabled and user.disabled_at is None:
        user.disabled_at = utcnow()
    elif not disabled:
        user.disabled_at = None
    await session.flush()
    return user


async def delete_user(session: AsyncSession, *, user_id: uuid.UUID) -> bool:
    """Delete a user with its tokens, configurations and personal usage and audit rows. Its rows of teams' usage
    and audit stay (a team's spend and trail outlive its members): the database sets their user_id NULL, and
    usage keeps the user's name."""
    user = await session.get(User, user_id)
    if user is None:
        return False
    team_rows = UsageRecord.user_id == user_id, UsageRecord.team_id.is_not(None)
    await session.execute(update(UsageRecord).where(*team_rows).values(user_name=user.name))
    await session.execute(delete(UsageRecord).where(UsageRecord.user_id == user_id, UsageRecord.team_id.is_(None)))
    await session.execute(delete(AuditEvent).where(AuditEvent.user_id == user_id, AuditEvent.team_id.is_(None)))
    result = await session.execute(delete(User).where(User.id == user_id))
    return bool(rows_affected(result))


async def count_users(session: AsyncSession) -> int:
    """How many users exist."""
    return len((await session.execute(select(User.id))).all())


async def issue_token(
    session: AsyncSession, *, user_id: uuid.UUID, name: str = "default", expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a token for a user; returns the row and the plaintext, which is never stored."""
    plaintext = new_token()
    token = ApiToken(
        id=uuid.uuid4(),
        user_id=user_id,
        name=name,
        token_hash=hash_token(plaintext),
        prefix=display_prefix(plaintext),
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.add(token)
    await session.flush()
    return token, plaintext


async def list_tokens(session: AsyncSession, *, user_id: uuid.UUID | None = None) -> list[ApiToken]:
    """Tokens (hashes only), optionally of one user."""
    query = select(ApiToken).order_by(ApiToken.created_at)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return list((await session.execute(query)).scalars())


async def revoke_token(session: AsyncSession, *, token_id: uuid.UUID) -> ApiToken | None:
    """Mark a token revoked (idempotent); None when it does not exist."""
    token = await session.get(ApiToken, token_id)
    if token is not None and token.revoked_at is None:
        token.revoked_at = utcnow()
        await session.flush()
    return token


async def find_token(session: AsyncSession, *, token_hash: str) -> tuple[ApiToken, User] | None:
    """The token row with its user, by hash."""
    row = (
        await session.execute(
            select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == token_hash)
        )
    ).first()
    return (row[0], row[1]) if row else None
