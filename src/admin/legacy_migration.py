"""Legacy settings migration: the operator's run (POST /admin/migrations/legacy-settings) and each user's status."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from pydantic import Field

from admin.registry import ApiRegistry
from admin.schemas import StrictBody, json_response
from gateway.errors import BadRequest, Unprocessable
from gateway.legacy.migration import MigrationReport, MigrationStatus, migration_status, run_migration
from gateway.legacy.source import LegacySource, LegacySourceError, open_source
from gateway.settings import TABLE_RE
from gateway.web.appkeys import LEGACY_SOURCE, SESSIONMAKER
from gateway.web.auth import caller_of
from gateway.web.legacy import app_migrator
from gateway.web.requests import parse_body

api = ApiRegistry(tag="migrations")


class LegacyMigrationRequest(StrictBody):
    from_db: str | None = Field(default=None, max_length=2048,
                                description="PostgreSQL or SQLite URL holding user_settings(user_id, settings)")
    table: str = Field(default="user_settings", pattern=TABLE_RE.pattern)
    from_files: str | None = Field(default=None, max_length=4096,
                                   description="Folder of settings.json files on the gateway host")
    dry_run: bool = False


def _source(request: web.Request, body: LegacyMigrationRequest) -> tuple[LegacySource, bool]:
    """The source to read and whether this request opened it (and so must close it)."""
    if body.from_db is not None and body.from_files is not None:
        raise Unprocessable("Give from_db or from_files, not both", param="from_files")
    if body.from_db is None and body.from_files is None:
        configured = request.config_dict[LEGACY_SOURCE]
        if configured is None:
            raise Unprocessable("Give from_db or from_files (no legacy source is configured)", param="from_db")
        return configured, False
    try:
        directory = Path(body.from_files) if body.from_files is not None else None
        return open_source(db_url=body.from_db, table_name=body.table, directory=directory), True
    except LegacySourceError as exc:
        raise BadRequest(str(exc), param="from_files" if body.from_files else "from_db") from None


@api.route("POST", "/admin/migrations/legacy-settings", summary="Migrate legacy single-key settings",
           body=LegacyMigrationRequest, response=MigrationReport, errors=(400, 403, 422))
async def migrate_legacy_handler(request: web.Request) -> web.Response:
    body = await parse_body(request, LegacyMigrationRequest)
    source, opened = _source(request, body)
    try:
        report = await run_migration(app_migrator(request.config_dict), source, dry_run=body.dry_run,
                                     actor=caller_of(request).user_name)
    except LegacySourceError as exc:
        raise BadRequest(str(exc), param="from_files" if body.from_files else "from_db") from None
    finally:
        if opened:
            await source.close()
    return json_response(report)


@api.route("GET", "/migrations/status", summary="Whether your legacy settings were found, migrated, or need the key "
           "re-entered", response=MigrationStatus, errors=(403,))
async def migration_status_handler(request: web.Request) -> web.Response:
    caller = caller_of(request)
    user_id = caller.require_user()
    async with request.config_dict[SESSIONMAKER]() as session:
        status = await migration_status(session, request.config_dict[LEGACY_SOURCE], user_id=user_id,
                                        user=caller.user_name)
    return json_response(status)
