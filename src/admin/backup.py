"""Export and import of the caller's configurations. Registered before the configuration CRUD module so that
/llm-configurations/export and /import are never taken for a configuration id."""

from __future__ import annotations

import uuid

from aiohttp import web
from pydantic import BaseModel, Field

from admin.registry import ApiRegistry
from admin.schemas import StrictBody, json_response
from gateway.configurations.backup import ExportDocument, ImportReport, export_configurations, import_configurations
from gateway.errors import Forbidden
from gateway.store.changes import Change
from gateway.web.appkeys import CHANGES, KEYRING, POLICY, SESSIONMAKER, SETTINGS, TEST_LIMITER
from gateway.web.auth import caller_of
from gateway.web.requests import parse_body, parse_query

api = ApiRegistry(tag="backup")
# An export with keys must not sit in a browser or proxy cache.
NO_STORE = {"Cache-Control": "no-store"}


class ExportQuery(BaseModel):
    passphrase: str | None = Field(default=None, max_length=1024)


class ExportRequest(StrictBody):
    passphrase: str | None = Field(default=None, max_length=1024,
                                   description="Include keys, sealed under this passphrase (scrypt + AES-256-GCM)")


class ImportRequest(StrictBody):
    data: ExportDocument
    passphrase: str | None = Field(default=None, max_length=1024)
    dry_run: bool = False
    overwrite: bool = Field(default=False, description="replace configurations whose name exists with other settings")


def limited(request: web.Request) -> uuid.UUID:
    """The caller, within the per-user budget: each import or export may run scrypt, which is slow on purpose."""
    user_id = caller_of(request).require_user()
    request.config_dict[TEST_LIMITER].require(("backup", user_id), what="imports and exports")
    return user_id


def check_key_export(request: web.Request, passphrase: str | None) -> None:
    """403 when keys are asked for and this gateway does not export keys."""
    if passphrase is not None and not request.config_dict[SETTINGS].allow_key_export:
        raise Forbidden("This gateway does not export keys (ALLOW_KEY_EXPORT is off): export without a passphrase",
                        param="passphrase", code="key_export_disabled")


async def _export(request: web.Request, passphrase: str | None) -> web.Response:
    user_id = limited(request)
    check_key_export(request, passphrase)
    async with request.config_dict[SESSIONMAKER]() as session:
        document = await export_configurations(session, keyring=request.config_dict[KEYRING], user_id=user_id,
                                               passphrase=passphrase)
    return json_response(document, headers=NO_STORE)


@api.route("GET", "/llm-configurations/export", summary="Export your configurations; keys only with ?passphrase= "
           "(prefer POST: query strings reach access logs)", query=ExportQuery, response=ExportDocument,
           errors=(403, 422, 429))
async def export_get_handler(request: web.Request) -> web.Response:
    return await _export(request, parse_query(request, ExportQuery).passphrase)


@api.route("POST", "/llm-configurations/export", summary="Export your configurations; keys sealed under the "
           "passphrase in the body", body=ExportRequest, response=ExportDocument, errors=(403, 422, 429))
async def export_post_handler(request: web.Request) -> web.Response:
    body = await parse_body(request, ExportRequest) if request.body_exists else ExportRequest()
    return await _export(request, body.passphrase)


@api.route("POST", "/llm-configurations/import", summary="Import an export: merge by name, conflicts reported, "
           "keys restored only with the right passphrase", body=ImportRequest, response=ImportReport,
           errors=(400, 403, 409, 422, 429))
async def import_handler(request: web.Request) -> web.Response:
    user_id = limited(request)
    body = await parse_body(request, ImportRequest)
    async with request.config_dict[SESSIONMAKER]() as session:
        report = await import_configurations(
            session, keyring=request.config_dict[KEYRING], policy=request.config_dict[POLICY], user_id=user_id,
            document=body.data, passphrase=body.passphrase, dry_run=body.dry_run, overwrite=body.overwrite,
        )
        if not body.dry_run:
            await request.config_dict[CHANGES].commit(session, Change("configurations", str(user_id)))
    return json_response(report)
