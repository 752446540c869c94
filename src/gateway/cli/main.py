"""llm-gateway: keep many LLM configurations with encrypted keys and call them through one OpenAI-compatible
endpoint. Settings come from LLM_GATEWAY_* variables and the TOML file named by LLM_GATEWAY_CONFIG."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway import __version__, logs
from gateway.accounts.users import (
    create_user,
    get_user_by_name,
    issue_token,
    list_tokens,
    list_users,
    revoke_token,
    set_disabled,
    valid_user_name,
)
from gateway.cli import imports as imports_cli
from gateway.cli import teams as teams_cli
from gateway.cli.bootstrap import (
    StartupError,
    check_database,
    create_sqlite_file,
    describe_database_error,
    ensure_first_admin,
    ensure_key_ring,
    require_schema,
    sqlite_path,
)
from gateway.configurations.crud import Policy
from gateway.configurations.providers import ProviderCatalog
from gateway.crypto.keyring import KeyRing, generate_key_entry
from gateway.crypto.rotation import RotationReport, rotate_keys
from gateway.errors import GatewayError
from gateway.legacy.migration import MigrationReport, Migrator, run_migration
from gateway.legacy.source import LegacySourceError, open_source
from gateway.settings import TABLE_RE, ConfigFileError, Settings, describe_settings_error
from gateway.ssrf import UrlPolicy
from gateway.store import migrate
from gateway.store.changes import Change, ChangeBus
from gateway.store.db import make_engine, make_sessionmaker
from gateway.teams.departure import ON_LAST_OWNER, delete_member_user
from gateway.teams.membership import changes_for

T = TypeVar("T")


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and TOML file, or a one-line error naming the setting."""
    try:
        given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        settings = Settings(**given)
    except ValidationError as exc:
        raise StartupError(describe_settings_error(exc)) from None
    except ConfigFileError as exc:
        raise StartupError(str(exc)) from None
    logs.configure(settings.log_level, settings.log_format)
    return settings


async def _with_session(settings: Settings, work: Callable[..., Awaitable[T]], *, writes: bool = True) -> T:
    await require_schema(settings)
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            result = await work(session)
            if not writes:
                return result
            # Running gateways drop their token caches: a token revoked here is refused there at once.
            await ChangeBus().commit(session, Change("users"), Change("tokens"))
            return result
    finally:
        await engine.dispose()


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the gateway."""
    from gateway.cli.serve import check_port, serve, startup_block

    settings = load_settings(host=args.host, port=args.port, workers=args.workers)
    check_port(settings)
    settings = ensure_key_ring(settings)
    for warning in _run(lambda: check_database(settings, apply_migrations=settings.is_sqlite)):
        print(f"llm-gateway: warning: {warning}", file=sys.stderr, flush=True)
    token = _run(lambda: ensure_first_admin(settings))
    print(startup_block(settings, token), flush=True)
    return serve(settings)


def cmd_db(args: argparse.Namespace) -> int:
    """Apply or revert migrations."""
    settings = load_settings()
    try:
        if args.action == "upgrade":
            db_file = sqlite_path(settings)
            if db_file is not None:
                create_sqlite_file(db_file)
            migrate.upgrade(settings.database_url, args.revision or "head")
        elif args.action == "downgrade":
            migrate.downgrade(settings.database_url, args.revision or "-1")
        else:
            engine = make_engine(settings.database_url)
            print(_run(lambda: _current_and_dispose(engine)) or "empty")
    except (SQLAlchemyError, OSError) as exc:
        raise StartupError(describe_database_error(settings, exc)) from None
    return 0


async def _current_and_dispose(engine: AsyncEngine) -> str | None:
    try:
        return await migrate.current_revision(engine)
    finally:
        await engine.dispose()


def cmd_users(args: argparse.Namespace) -> int:
    """Create, list, disable, enable or delete users."""
    settings = load_settings()
    if args.action == "create":
        valid_user_name(args.name)

    async def work(session: AsyncSession) -> str:
        if args.action == "list":
            return "\n".join(
                f"{u.id}  {u.name}{'  admin' if u.is_admin else ''}{'  disabled' if u.disabled_at else ''}"
                for u in await list_users(session)
            ) or "no users"
        if args.action == "create":
            created = await create_user(session, name=args.name, is_admin=args.admin)
            _, token = await issue_token(session, user_id=created.id)
            role = " as admin" if created.is_admin else ""
            return f"created user {created.name} ({created.id}){role}; token, shown once:\n{token}"
        user = await get_user_by_name(session, name=args.name)
        if user is None:
            raise StartupError(f"no user named {args.name!r} (see `llm-gateway users list`)")
        if args.action == "delete":
            affected = await delete_member_user(session, user_id=user.id, actor="cli",
                                                on_last_owner=args.on_last_owner)
            await ChangeBus().commit(session, *changes_for(affected or []))
            return f"deleted user {user.name} with its tokens, configurations and personal usage"
        await set_disabled(session, user=user, disabled=args.action == "disable")
        return f"{args.action}d user {user.name}"

    print(_run(lambda: _with_session(settings, work, writes=args.action != "list")))
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    """Create, list or revoke tokens."""
    settings = load_settings()

    async def work(session: AsyncSession) -> str:
        if args.action == "revoke":
            try:
                token_id = uuid.UUID(args.target)
            except ValueError:
                raise StartupError("tokens revoke takes a token id (see `llm-gateway tokens list USER`)") from None
            if await revoke_token(session, token_id=token_id) is None:
                raise StartupError("no token with that id")
            return "revoked"
        user = await get_user_by_name(session, name=args.target)
        if user is None:
            raise StartupError(f"no user named {args.target!r}")
        if args.action == "create":
            expires = datetime.now(UTC) + timedelta(days=args.expires_days) if args.expires_days else None
            _, token = await issue_token(session, user_id=user.id, name=args.name, expires_at=expires)
            return f"token for {user.name}, shown once:\n{token}"
        rows = await list_tokens(session, user_id=user.id)
        return "\n".join(
            f"{t.id}  {t.prefix}…  {t.name}  {'revoked' if t.revoked_at else 'active'}"
            f"{'  expires ' + t.expires_at.isoformat() if t.expires_at else ''}"
            for t in rows
        ) or "no tokens"

    print(_run(lambda: _with_session(settings, work, writes=args.action != "list")))
    return 0


def cmd_teams(args: argparse.Namespace) -> int:
    """List teams, create one, add or remove a member."""
    settings = load_settings()
    keyring = None
    if args.action == "create":
        keyring = KeyRing.from_entries(ensure_key_ring(settings, announce=False).key_ring_entries())
    # The work commits itself, with the changes of the users whose view of the team changed.
    print(_run(lambda: _with_session(settings, teams_cli.work(args, keyring, max_teams=settings.max_teams_per_user),
                                    writes=False)))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """Generate a key entry, or re-encrypt every stored key under the primary key."""
    if args.action == "generate":
        print(generate_key_entry(args.key_id))
        return 0
    settings = ensure_key_ring(load_settings(), announce=False)
    keyring = KeyRing.from_entries(settings.key_ring_entries())

    async def work() -> RotationReport:
        engine = make_engine(settings.database_url)
        try:
            return await rotate_keys(make_sessionmaker(engine), keyring=keyring, bus=ChangeBus(),
                                     batch_size=args.batch_size or settings.rotation_batch_size,
                                     max_batches=args.max_batches)
        finally:
            await engine.dispose()

    report = _run(work)
    print(report.model_dump_json(indent=2))
    return 1 if report.failed or report.team_keys_failed else 0


def _policy(settings: Settings) -> Policy:
    """What a write of configurations checks: the provider catalog, the URL policy, the per-user cap."""
    return Policy(catalog=ProviderCatalog.load(settings.providers_file), urls=UrlPolicy.from_settings(settings),
                  max_per_user=settings.max_configurations_per_user,
                  max_per_team=settings.max_configurations_per_team)


def cmd_migrate_legacy(args: argparse.Namespace) -> int:
    """Migrate legacy single-key settings into configurations and print the report."""
    settings = ensure_key_ring(load_settings(), announce=False)
    policy = _policy(settings)

    async def work() -> MigrationReport:
        try:
            source = open_source(db_url=args.from_db, table_name=args.table, directory=args.from_files)
        except LegacySourceError as exc:
            raise StartupError(str(exc)) from None
        engine = make_engine(settings.database_url)
        migrator = Migrator(sessionmaker=make_sessionmaker(engine),
                            keyring=KeyRing.from_entries(settings.key_ring_entries()), policy=policy, bus=ChangeBus())
        try:
            return await run_migration(migrator, source, dry_run=args.dry_run, actor="cli")
        except LegacySourceError as exc:
            raise StartupError(str(exc)) from None
        finally:
            await source.close()
            await engine.dispose()

    print(_run(work).model_dump_json(indent=2))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import another gateway's configurations and print the report."""
    settings = ensure_key_ring(load_settings(), announce=False)
    keyring = KeyRing.from_entries(settings.key_ring_entries())
    print(_run(lambda: _with_session(settings, imports_cli.work(args, keyring, _policy(settings)), writes=False)))
    return 0


def cmd_templates(args: argparse.Namespace) -> int:
    """Check that every template model is still in litellm's catalog."""
    from gateway.templates.check import run_check

    settings = load_settings()
    output, status = run_check(settings.providers_file, settings.templates_file)
    print(output)
    return status


def add_templates_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`templates check`."""
    templates = sub.add_parser("templates", help="built-in and operator templates")
    templates.add_argument("action", choices=["check"], help="check: report template models litellm no longer knows")
    templates.set_defaults(func=cmd_templates)


def _table_name(value: str) -> str:
    if not TABLE_RE.match(value):
        raise argparse.ArgumentTypeError("a table name: letters, digits, _ (optionally schema.table)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="llm-gateway", description=__doc__)
    parser.add_argument("--version", action="version", version=f"llm-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = Settings.model_fields

    serve = sub.add_parser(
        "serve", help="run the gateway", description="Run the gateway: on first start with the embedded SQLite "
        "default it writes DATA_DIR/encryption.key, creates the database and the user 'admin' (token printed once).")
    serve.add_argument("--host", help="address to listen on (LLM_GATEWAY_HOST; default "
                       f"{defaults['host'].default})")
    serve.add_argument("--port", type=int, help=f"port (LLM_GATEWAY_PORT; default {defaults['port'].default})")
    serve.add_argument("--workers", type=int, help="processes sharing the port (LLM_GATEWAY_WORKERS; default "
                       f"{defaults['workers'].default})")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade", "downgrade", "current"])
    db.add_argument("revision", nargs="?")
    db.set_defaults(func=cmd_db)

    users = sub.add_parser("users", help="users")
    users_sub = users.add_subparsers(dest="action", required=True)
    create = users_sub.add_parser("create", help="create a user and print its token once")
    create.add_argument("name", help="letters, digits or . _ @ - (at most 100)")
    create.add_argument("--admin", action="store_true", help="may manage users and tokens")
    users_sub.add_parser("list", help="every user: id, name, admin, disabled")
    for action, what in (("disable", "refuse the user's tokens until enabled"), ("enable", "accept them again"),
                         ("delete", "delete the user with its tokens, configurations and personal usage")):
        users_sub.add_parser(action, help=what).add_argument("name")
    users_sub.choices["delete"].add_argument(
        "--on-last-owner", choices=ON_LAST_OWNER, default="refuse",
        help="when the user is a team's last owner: refuse (default), or transfer ownership to the team's "
        "longest-standing other member")
    users.set_defaults(func=cmd_users)

    tokens = sub.add_parser(
        "tokens", help="gateway tokens",
        description="Lost the admin token? `llm-gateway tokens create admin` prints a new one (run it where the "
        "gateway's database and settings are).")
    tokens.add_argument("action", choices=["create", "list", "revoke"])
    tokens.add_argument("target", help="user name (create, list) or token id (revoke)")
    tokens.add_argument("--name", default="cli")
    tokens.add_argument("--expires-days", type=int)
    tokens.set_defaults(func=cmd_tokens)

    keys = sub.add_parser("keys", help="encryption keys")
    keys.add_argument("action", choices=["generate", "rotate"])
    keys.add_argument("--key-id", help="generate: the new entry's id")
    keys.add_argument("--batch-size", type=int, help="rotate: rows per transaction")
    keys.add_argument("--max-batches", type=int, help="rotate: stop after this many batches (run again to resume)")
    keys.set_defaults(func=cmd_keys)

    legacy = sub.add_parser("migrate-legacy", help="import legacy single-key settings")
    source = legacy.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-db", metavar="URL", help="database holding user_settings(user_id, settings)")
    source.add_argument("--from-files", metavar="DIR", type=Path, help="folder of <user>/settings.json or <user>.json")
    legacy.add_argument("--table", default="user_settings", type=_table_name)
    legacy.add_argument("--dry-run", action="store_true", help="report what would happen, write nothing")
    legacy.set_defaults(func=cmd_migrate_legacy)
    teams_cli.add_teams_command(sub, cmd_teams)
    imports_cli.add_import_command(sub, cmd_import)
    add_templates_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one-line errors, never a traceback, for anything the operator can fix."""
    logs.configure()
    args = build_parser().parse_args(argv)
    if args.command != "db":
        # Alembic's progress lines are noise outside `db` commands; failures still surface as errors.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except (StartupError, GatewayError) as exc:
        print(f"llm-gateway: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
