"""Moving legacy users onto configurations: one "Migrated Configuration" per user with a real key, idempotent
(the source reference and an audit record are stored), never a second default, a report of everything else."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

from pydantic import BaseModel, Field
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.accounts import audit
from gateway.accounts.users import create_user, get_user_by_name
from gateway.configurations.crud import Policy, check_provider_and_url, create_configuration
from gateway.crypto.keyring import KeyRing
from gateway.errors import GatewayError
from gateway.legacy.source import (
    USER_NAME_RE,
    LegacyRecord,
    LegacySource,
    LegacySourceError,
    classify,
    split_model,
)
from gateway.store.changes import Change, ChangeBus
from gateway.store.models import AuditEvent, LLMConfiguration, User
from gateway.validation import MAX_MODEL, check_text

CONFIGURATION_NAME = "Migrated Configuration"
AUDIT_ACTION = "legacy.migrated"
log = logging.getLogger("gateway.legacy")


class UserNote(BaseModel):
    """A user the run did not import, and why."""

    user: str
    reason: str


class MigrationReport(BaseModel):
    """What a run found and did (or, in a dry run, would do)."""

    dry_run: bool = False
    source: str = ""
    scanned: int = 0
    migrated: int = 0
    already_migrated: int = 0
    users_created: int = 0
    needs_reentry: list[UserNote] = Field(default_factory=list)
    skipped: list[UserNote] = Field(default_factory=list)
    errors: list[UserNote] = Field(default_factory=list)


@dataclass(frozen=True)
class Migrator:
    """What a migration needs from the application."""

    sessionmaker: async_sessionmaker[AsyncSession]
    keyring: KeyRing
    policy: Policy
    bus: ChangeBus


def source_ref(user: str) -> str:
    """The reference stored on a migrated configuration: one per legacy user, whatever the source."""
    return f"legacy-settings:{user}"


async def was_migrated(session: AsyncSession, *, user_id: uuid.UUID, user: str) -> bool:
    """True when this user was migrated before, even if they have since deleted the configuration."""
    by_ref = exists().where(LLMConfiguration.source_ref == source_ref(user))
    by_audit = exists().where(AuditEvent.user_id == user_id, AuditEvent.action == AUDIT_ACTION)
    return bool((await session.execute(select(by_ref | by_audit))).scalar())


async def free_name(session: AsyncSession, *, user_id: uuid.UUID, base: str) -> str:
    """`base`, or `base 2`, `base 3` … whichever the user does not have yet."""
    query = select(LLMConfiguration.name).where(LLMConfiguration.user_id == user_id)
    taken = set((await session.execute(query)).scalars())
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base} {n}"
    return name


async def migrate_record(
    session: AsyncSession, migrator: Migrator, record: LegacyRecord, *, dry_run: bool, actor: str
) -> tuple[str, str | None, User | None, bool]:
    """Migrate one user (flushed, not committed): (outcome, reason, user, user_created)."""
    if record.settings is None:
        return "error", "settings are not a JSON object", None, False
    verdict = classify(record.settings)
    if verdict.kind != "real":
        return verdict.kind, verdict.reason, None, False
    if not USER_NAME_RE.match(record.user):
        return "error", "user id is not a valid user name (letters, digits, _ . @ -)", None, False
    provider, model = await asyncio.to_thread(split_model, migrator.policy.catalog, verdict.model or "")
    # The write path's own checks, before a dry run stops: it must report what a real run would refuse.
    check_text(model, param="llm_model", max_length=MAX_MODEL)
    base_url = check_provider_and_url(migrator.policy, provider, verdict.base_url)
    user = await get_user_by_name(session, name=record.user)
    if user is not None and await was_migrated(session, user_id=user.id, user=record.user):
        return "already_migrated", None, user, False
    if dry_run:
        return "migrated", None, user, user is None
    created = user is None
    if user is None:
        user = await create_user(session, name=record.user)
    has_default = (await session.execute(
        select(exists().where(LLMConfiguration.user_id == user.id, LLMConfiguration.is_default.is_(True)))
    )).scalar()
    config = await create_configuration(
        session, keyring=migrator.keyring, policy=migrator.policy, user_id=user.id,
        name=await free_name(session, user_id=user.id, base=CONFIGURATION_NAME), provider=provider, model=model,
        api_key=verdict.api_key or "",
        base_url=base_url, is_default=not has_default, source_ref=source_ref(record.user),
    )
    audit.record(session, user_id=user.id, actor=actor, action=AUDIT_ACTION, configuration_id=config.id,
                 details={"provider": provider, "model": model})
    await session.flush()
    return "migrated", None, user, created


async def migrate_one(migrator: Migrator, record: LegacyRecord, *, dry_run: bool, actor: str,
                      report: MigrationReport) -> None:
    """One user in one transaction; a failure is reported and touches nothing else."""
    async with migrator.sessionmaker() as session:
        try:
            outcome, reason, user, created = await migrate_record(session, migrator, record, dry_run=dry_run,
                                                                  actor=actor)
            if outcome == "migrated" and not dry_run and user is not None:
                changes = [Change("configurations", str(user.id))]
                if created:
                    changes.append(Change("users", str(user.id)))
                await migrator.bus.commit(session, *changes)
        except GatewayError as exc:
            await session.rollback()
            # A concurrent run (or a read-through) got there first: the unique source reference held.
            if await _migrated_meanwhile(migrator, record.user):
                outcome, reason, created = "already_migrated", None, False
            else:
                outcome, reason, created = "error", exc.message, False
    report.users_created += int(created)
    if outcome == "migrated":
        report.migrated += 1
    elif outcome == "already_migrated":
        report.already_migrated += 1
    else:
        notes = {"needs_reentry": report.needs_reentry, "skipped": report.skipped}.get(outcome, report.errors)
        notes.append(UserNote(user=record.user, reason=reason or outcome))


async def _migrated_meanwhile(migrator: Migrator, user: str) -> bool:
    async with migrator.sessionmaker() as session:
        found = await get_user_by_name(session, name=user)
        return found is not None and await was_migrated(session, user_id=found.id, user=user)


async def run_migration(migrator: Migrator, source: LegacySource, *, dry_run: bool = False,
                        actor: str = "migration") -> MigrationReport:
    """Migrate every user of a source; raises LegacySourceError when the source cannot be read."""
    report = MigrationReport(dry_run=dry_run, source=source.describe())
    async for record in source.records():
        report.scanned += 1
        await migrate_one(migrator, record, dry_run=dry_run, actor=actor, report=report)
    return report


class MigrationStatus(BaseModel):
    """One user's view: were legacy settings found, migrated, or is the key to be re-entered."""

    legacy_source_configured: bool
    found: bool
    migrated: bool
    needs_reentry: bool
    state: str = Field(description="migrated | needs_reentry | pending | skipped | not_found")
    reason: str | None = None
    configuration_id: uuid.UUID | None = None


async def migration_status(session: AsyncSession, source: LegacySource | None, *, user_id: uuid.UUID,
                           user: str) -> MigrationStatus:
    """The caller's migration state, from the database and (when configured) the legacy source."""
    migrated = await was_migrated(session, user_id=user_id, user=user)
    config_id = (await session.execute(
        select(LLMConfiguration.id).where(LLMConfiguration.source_ref == source_ref(user))
    )).scalar_one_or_none()
    has_any = (await session.execute(select(exists().where(LLMConfiguration.user_id == user_id)))).scalar()
    record = None
    if source is not None:
        try:
            record = await source.find(user)
        except LegacySourceError as exc:
            log.warning("legacy status for a user: %s", exc)
    verdict = classify(record.settings) if record is not None and record.settings is not None else None
    needs_reentry = not migrated and not has_any and verdict is not None and verdict.kind == "needs_reentry"
    if migrated:
        state = "migrated"
    elif record is None:
        state = "not_found"
    elif needs_reentry:
        state = "needs_reentry"
    elif verdict is not None and verdict.kind == "real":
        state = "pending"
    else:
        state = "skipped"
    return MigrationStatus(legacy_source_configured=source is not None, found=record is not None, migrated=migrated,
                           needs_reentry=needs_reentry, state=state, reason=verdict.reason if verdict else None,
                           configuration_id=config_id)


class ReadThrough:
    """Migrates a user who has no configuration yet on their first request; remembers whom it checked."""

    def __init__(self, source: LegacySource) -> None:
        self.source = source
        self._checked: set[uuid.UUID] = set()

    async def ensure(self, migrator: Migrator, *, user_id: uuid.UUID, user: str) -> None:
        """Migrate this user now if they have no configuration and the source has a real key for them."""
        if user_id in self._checked:
            return
        async with migrator.sessionmaker() as session:
            has_any = (await session.execute(select(exists().where(LLMConfiguration.user_id == user_id)))).scalar()
        if not has_any:
            try:
                record = await self.source.find(user)
            except LegacySourceError as exc:
                log.warning("legacy read-through skipped: %s", exc)
                return  # not remembered: the next request tries again
            if record is not None:
                report = MigrationReport()
                await migrate_one(migrator, record, dry_run=False, actor="read-through", report=report)
                if report.errors:
                    log.warning("legacy read-through for a user failed: %s", report.errors[0].reason)
        self._checked.add(user_id)
