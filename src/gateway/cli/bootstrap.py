"""What `serve` checks and prepares before it listens: key ring, schema, stored key ids, the first user.

Every failure is a `StartupError` with a one-line reason; the CLI prints it without a traceback.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from gateway.accounts.users import count_users, create_user, issue_token
from gateway.crypto.inventory import ring_key_use, teams_missing_data_keys
from gateway.crypto.keyring import generate_key_entry
from gateway.errors import Conflict
from gateway.settings import Settings, sqlite_file
from gateway.store import migrate
from gateway.store.db import make_engine, make_sessionmaker

KEY_FILE = "encryption.key"


class StartupError(Exception):
    """The gateway cannot start; the message says what to fix."""


def sqlite_path(settings: Settings) -> Path | None:
    """The database file of a sqlite URL (None for in-memory or PostgreSQL)."""
    path = sqlite_file(settings.database_url)
    return None if path is None else Path(path)


def create_sqlite_file(path: Path) -> None:
    """Create the database file 0600 (it holds ciphertexts and token hashes) before SQLite opens it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def describe_database_error(settings: Settings, exc: BaseException) -> str:
    """One line: which database (host and name, never the password) and the driver's own reason."""
    url = make_url(settings.database_url)
    host = f"{url.host or 'localhost'}:{url.port or 5432}"
    where = f"SQLite database {url.database}" if settings.is_sqlite else f"database {url.database!r} on {host}"
    reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(reason, OSError) and reason.errno:
        text = os.strerror(reason.errno).lower()
    else:
        text = str(reason).strip() or reason.__class__.__name__
    # asyncpg's errors come wrapped as "<class 'asyncpg.exceptions.X'>: reason".
    text = text.split(">: ", 1)[-1].splitlines()[0]
    return f"cannot open the {where}: {text} (LLM_GATEWAY_DATABASE_URL)"


async def require_schema(settings: Settings) -> None:
    """For CLI commands: the database exists, opens and is at head; else a one-line StartupError."""
    db_file = sqlite_path(settings)
    if db_file is not None and not db_file.exists():
        raise StartupError(f"no database at {db_file}: start `llm-gateway serve` once or run `llm-gateway db upgrade`"
                           " (LLM_GATEWAY_DATABASE_URL / LLM_GATEWAY_DATA_DIR)")
    engine = make_engine(settings.database_url)
    try:
        current = await migrate.current_revision(engine)
    except (SQLAlchemyError, OSError) as exc:
        raise StartupError(describe_database_error(settings, exc)) from None
    finally:
        await engine.dispose()
    if current != migrate.HEAD_REVISION:
        raise StartupError(_behind(current))


def _behind(current: str | None) -> str:
    if current is None:
        return "the database has no schema yet: run `llm-gateway db upgrade`"
    return f"database schema is at {current}, not {migrate.HEAD_REVISION}: run `llm-gateway db upgrade`"


def ensure_key_ring(settings: Settings, *, announce: bool = True) -> Settings:
    """Settings with a key ring: configured, or on SQLite the local key file (created 0600 on first start)."""
    if settings.encryption_keys is not None:
        return settings
    if not settings.is_sqlite:
        raise StartupError(
            "LLM_GATEWAY_ENCRYPTION_KEYS is required with PostgreSQL (make one: llm-gateway keys generate)"
        )
    key_file = settings.data_dir / KEY_FILE
    if key_file.exists():
        entry = key_file.read_text().strip()
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        entry = generate_key_entry("local1")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(entry + "\n")
        if announce:
            print(f"llm-gateway: wrote a new encryption key to {key_file} (mode 0600); back it up", flush=True)
    try:
        return settings.model_copy(update={"encryption_keys": SecretStr(entry)})
    except ValueError as exc:
        raise StartupError(f"{key_file} does not hold a valid key entry") from exc


async def check_database(settings: Settings, *, apply_migrations: bool) -> list[str]:
    """Bring the schema to head (SQLite) or refuse when it is behind (PostgreSQL); refuse ring key ids in use that
    the ring lacks. Returns warnings to print: team configurations whose team data key is gone."""
    db_file = sqlite_path(settings)
    if db_file is not None:
        create_sqlite_file(db_file)
    engine = make_engine(settings.database_url)
    try:
        current = await migrate.current_revision(engine)
        if current != migrate.HEAD_REVISION:
            if not apply_migrations:
                raise StartupError(_behind(current))
            await migrate.upgrade_async(settings.database_url)
        ring_ids = {key_id for key_id, _ in settings.key_ring_entries()}
        async with make_sessionmaker(engine)() as session:
            in_use = await ring_key_use(session)
            damaged = await teams_missing_data_keys(session)
    except (SQLAlchemyError, OSError) as exc:
        raise StartupError(describe_database_error(settings, exc)) from None
    finally:
        await engine.dispose()
    missing = [use.describe() for use in in_use if use.key_id not in ring_ids]
    if missing:
        raise StartupError(
            f"the key ring lacks keys still in use: {', '.join(missing)}; add them to LLM_GATEWAY_ENCRYPTION_KEYS"
        )
    # Not a reason to stop every other user: no setting brings a lost data key back (restore team_keys from a
    # backup, or re-enter those keys), and those configurations fail on their own when used.
    return [f"team {team!r}: {count} configuration{'' if count == 1 else 's'} under a team data key that no"
            " longer exists (damaged database: restore team_keys from a backup or enter those keys again)"
            for team, count in damaged.items()]


async def ensure_first_admin(settings: Settings) -> str | None:
    """On an empty database, create the user `admin` and return its token (shown once)."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            if await count_users(session):
                return None
            try:
                user = await create_user(session, name="admin", is_admin=True)
            except Conflict:
                # Another gateway starting on the same empty database made it first: that one prints the token.
                return None
            _, token = await issue_token(session, user_id=user.id, name="first-start")
            await session.commit()
            return token
    finally:
        await engine.dispose()
