"""SQLAlchemy 2.0 typed models; Alembic (migrations/) owns the schema they describe."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    Uuid,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base with the constraint naming convention Alembic relies on."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A person or service that owns configurations and tokens."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # set: tokens refused


class ApiToken(Base):
    """A gateway token: shown once, stored as its SHA-256 hash."""

    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="default")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Team(Base):
    """A group of users sharing configurations; its keys are encrypted under its own data key (team_keys)."""

    __tablename__ = "teams"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamMember(Base):
    """A user's membership of a team, with the role `owner` or `member`."""

    __tablename__ = "team_members"
    __table_args__ = (CheckConstraint("role IN ('owner', 'member')", name="role"),)

    team_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(10))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamInvitation(Base):
    """A pending invitation of a user into a team; accepting it makes the membership, declining drops it."""

    __tablename__ = "team_invitations"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'member')", name="role"),
        # One pending invitation per user and team: inviting again changes its role.
        Index("uq_team_invitations_team_id_user_id", "team_id", "user_id", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("teams.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(10))
    invited_by: Mapped[str] = mapped_column(String(100))  # the inviter's name, kept if that user goes
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamNameHold(Base):
    """A team name a team gave up (renamed or deleted), held for each user who was a member then: while any of
    them exists no other team may take the name, so their `<team>/<name>` labels answer 404 rather than start
    meaning a newcomer's configurations. No foreign key to teams: the hold outlives a deleted team."""

    __tablename__ = "team_name_holds"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    team_id: Mapped[uuid.UUID] = mapped_column(Uuid)  # the team that gave it up (it may take it back)
    released_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamKey(Base):
    """A team's 256-bit data key, stored only wrapped by the key ring (`key_id` names the ring key).

    `id` is what a team configuration's `key_id` names. A retired key still decrypts while a team key rotation
    re-encrypts the team's configurations; it is deleted when none is left under it."""

    __tablename__ = "team_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    team_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    wrapped_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LLMConfiguration(Base):
    """One named provider/model/key of a user or of a team; the key is AES-GCM ciphertext bound to this row."""

    __tablename__ = "llm_configurations"
    __table_args__ = (
        # A configuration belongs to exactly one user or exactly one team.
        CheckConstraint("(user_id IS NULL) <> (team_id IS NULL)", name="one_owner"),
        # A default is a user's choice: a team configuration is a member's default through member_defaults.
        CheckConstraint("team_id IS NULL OR NOT is_default", name="team_not_default"),
        Index("uq_llm_configurations_user_id_name", "user_id", "name", unique=True),
        Index("uq_llm_configurations_team_id_name", "team_id", "name", unique=True),
        # At most one default per user, enforced by the database on both PostgreSQL and SQLite: default_of is the
        # owner of a default and NULL otherwise, and NULLs never collide in a unique index. (A partial index says
        # the same, but its postgresql_where makes SQLAlchemy load its PostgreSQL dialect in every process:
        # 2 MiB and 19 modules on SQLite.)
        Index("uq_llm_configurations_one_default", "default_of", unique=True),
        Index("ix_llm_configurations_key_id", "key_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("teams.id", ondelete="CASCADE"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(100))
    provider: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200))
    api_key_encrypted: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(32))
    base_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    # Computed by the database for the index above.
    default_of: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, Computed("CASE WHEN is_default THEN user_id END", persisted=True), nullable=True
    )
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    fallback_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    test_status: Mapped[str] = mapped_column(String(20), default="untested")
    test_message: Mapped[str | None] = mapped_column(String(500), nullable=True)
    test_latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Where an imported configuration came from (legacy migration), so a second run creates nothing new.
    source_ref: Mapped[str | None] = mapped_column(String(300), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class MemberDefault(Base):
    """A member's default when it is a team configuration (one row per user at most).

    One default per user, whichever kind: a user's default is their personal row with `is_default`, or else
    the configuration named here; writes that set one clear the other under the user's lock. The foreign key to
    team_members drops the row when the membership ends, the one to llm_configurations when it is deleted."""

    __tablename__ = "member_defaults"
    __table_args__ = (
        ForeignKeyConstraint(
            ["team_id", "user_id"], ["team_members.team_id", "team_members.user_id"],
            ondelete="CASCADE", name="fk_member_defaults_team_id_team_members",
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    team_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    configuration_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("llm_configurations.id", ondelete="CASCADE", name="fk_member_defaults_configuration_id"),
        index=True,
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ConversationConfiguration(Base):
    """A conversation pinned to one configuration of its user."""

    __tablename__ = "conversation_configurations"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    configuration_id: Mapped[uuid.UUID] = mapped_column(
        Uuid,
        ForeignKey(
            "llm_configurations.id", ondelete="CASCADE", name="fk_conversation_configurations_configuration_id"
        ),
        index=True,
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class UsageRecord(Base):
    """One proxied request: tokens, cost, latency, outcome. Written in batches off the hot path."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_user_id_created_at", "user_id", "created_at"),
        # Partial: most rows are personal (no team) and a team's usage is asked by its id, which implies the
        # condition; a personal row's insert skips this B-tree (~17 % of SQLite's insert). PostgreSQL's index is
        # partial too (migration 0007), but not said here: a postgresql_* argument loads SQLAlchemy's PostgreSQL
        # dialect on every start, SQLite's included (tests/cli/test_serve_imports.py).
        Index("ix_usage_records_team_id_created_at", "team_id", "created_at", sqlite_where=text("team_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # SET NULL: a team's usage outlives the member who spent it (user_name then says who it was).
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    user_name: Mapped[str | None] = mapped_column(String(100), nullable=True)  # set when the user is deleted
    # No foreign keys: usage outlives a deleted configuration or team. No index of its own either: usage is always
    # asked of a user or a team, whose indexes find the rows; one more index would cost every request's insert.
    configuration_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)  # the team whose configuration served
    conversation_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    endpoint: Mapped[str] = mapped_column(String(50), default="chat/completions")
    provider: Mapped[str | None] = mapped_column(String(50), nullable=True)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[int] = mapped_column(Integer)
    error_class: Mapped[str | None] = mapped_column(String(100), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    """Who did what to which configuration, and when. Never a key."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_user_id_created_at", "user_id", "created_at"),
        Index("ix_audit_events_team_id_created_at", "team_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # SET NULL: a team's trail outlives the user who acted (actor keeps the name).
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    configuration_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    # The team an event belongs to; no foreign key, so a deleted team's history stays for administrators.
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChangeLog(Base):
    """Cache invalidations on SQLite, where there is no LISTEN/NOTIFY: other processes poll it (PostgreSQL
    uses NOTIFY and never writes here). AUTOINCREMENT keeps ids rising after old rows are pruned."""

    __tablename__ = "change_log"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    origin: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
