"""Team configuration endpoints (DESIGN §8): a team's configurations listed (members) and created or shared in
(owners), the team's audit trail and its key rotation (owners). The ordinary /api/llm-configurations/{id} routes
then act on them under the roles (admin.configurations)."""

from __future__ import annotations

import uuid
from typing import Annotated

from aiohttp import web
from pydantic import AfterValidator, Field

from admin.audit import AuditEventList, AuditEventPublic, AuditQuery
from admin.backup import NO_STORE, ExportRequest, ImportRequest, check_key_export, limited
from admin.checks import run_test_on_save
from admin.configurations import ConfigurationCreate, ConfigurationList, ConfigurationPublic, public_rows
from admin.registry import ApiRegistry
from admin.schemas import StrictBody, json_response, optional, printable
from admin.teams import TEAM, USER_ERRORS, commit_team
from gateway.accounts.audit import list_events, record
from gateway.configurations.backup import ExportDocument, ImportReport
from gateway.teams import defaults
from gateway.teams.backup import export_team_configurations, import_team_configurations
from gateway.teams.configurations import create_team_configuration, list_team_configurations, share_configuration
from gateway.teams.membership import membership
from gateway.teams.rotation import TeamRotationReport, rotate_team_key
from gateway.web.appkeys import CHANGES, KEYRING, POLICY, SESSIONMAKER
from gateway.web.auth import caller_of
from gateway.web.requests import parse_body, parse_query

api = ApiRegistry(tag="teams")
CONFIGS = TEAM + "/llm-configurations"


class ShareBody(StrictBody):
    configuration_id: uuid.UUID = Field(description="One of your own configurations")
    name: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(printable)] | None = optional(
        description="The name in the team; the source's name when absent")


def _caller(request: web.Request) -> tuple[uuid.UUID, str]:
    caller = caller_of(request)
    return caller.require_user(), caller.user_name


@api.route("GET", CONFIGS, summary="The team's configurations, keys masked (members)", response=ConfigurationList,
           errors=(*USER_ERRORS, 404))
async def list_team_configurations_handler(request: web.Request) -> web.Response:
    user_id, _ = _caller(request)
    async with request.config_dict[SESSIONMAKER]() as session:
        rows, _ = await list_team_configurations(session, user_id=user_id, team_id=request.match_info["team_id"])
        items = await public_rows(session, request.config_dict[KEYRING], rows, user_id=user_id)
    return json_response(ConfigurationList(items=items, total=len(items)))


@api.route("POST", CONFIGS, summary="Create a team configuration (owners); `is_default` makes it your default",
           body=ConfigurationCreate, response=ConfigurationPublic, status=201, errors=(*USER_ERRORS, 404, 409))
async def create_team_configuration_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    body = await parse_body(request, ConfigurationCreate)
    async with request.config_dict[SESSIONMAKER]() as session:
        config, member = await create_team_configuration(
            session, keyring=request.config_dict[KEYRING], policy=request.config_dict[POLICY], user_id=user_id,
            team_id=request.match_info["team_id"], **body.model_dump(exclude={"test_on_save", "is_default"}))
        if body.is_default:  # the owner's own default, like any member's choice
            await defaults.set_default(session, user_id=user_id, configuration_id=config.id)
        record(session, user_id=user_id, actor=actor, action="create", configuration_id=config.id,
               team_id=member.team.id, details={"name": config.name, "provider": config.provider,
                                                "model": config.model})
        await commit_team(request, session, member.team.id, user_id)
        if body.test_on_save:
            await run_test_on_save(request, session, config)
        item = (await public_rows(session, request.config_dict[KEYRING], [config], user_id=user_id))[0]
    return json_response(item, 201)


@api.route("POST", CONFIGS + "/share", summary="Copy one of your configurations into the team (owners); its key "
           "is re-encrypted on the server", body=ShareBody, response=ConfigurationPublic, status=201,
           errors=(*USER_ERRORS, 404, 409))
async def share_configuration_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    body = await parse_body(request, ShareBody)
    async with request.config_dict[SESSIONMAKER]() as session:
        copy, source, member = await share_configuration(
            session, keyring=request.config_dict[KEYRING], user_id=user_id, team_id=request.match_info["team_id"],
            configuration_id=body.configuration_id, name=body.name,
            max_per_team=request.config_dict[POLICY].max_per_team)
        record(session, user_id=user_id, actor=actor, action="share", configuration_id=copy.id,
               team_id=member.team.id, details={"name": copy.name, "source_id": str(source.id)})
        await commit_team(request, session, member.team.id)
        item = (await public_rows(session, request.config_dict[KEYRING], [copy], user_id=user_id))[0]
    return json_response(item, 201)


@api.route("GET", TEAM + "/audit-events", summary="The team's audit events, newest first (owners)",
           query=AuditQuery, response=AuditEventList, errors=(400, *USER_ERRORS, 404))
async def team_audit_handler(request: web.Request) -> web.Response:
    user_id, _ = _caller(request)
    query = parse_query(request, AuditQuery)
    async with request.config_dict[SESSIONMAKER]() as session:
        team = (await membership(session, user_id=user_id, team_id=request.match_info["team_id"], owner=True)).team
        events, total = await list_events(session, user_id=None, team_id=team.id, **query.model_dump())
    return json_response(AuditEventList(items=[AuditEventPublic.model_validate(e) for e in events], total=total))


@api.route("POST", TEAM + "/rotate-key", summary="A new data key for the team, its configurations re-encrypted "
           "under it (owners); an interrupted rotation is resumed", response=TeamRotationReport,
           errors=(*USER_ERRORS, 404))
async def rotate_team_key_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    async with request.config_dict[SESSIONMAKER]() as session:
        team = (await membership(session, user_id=user_id, team_id=request.match_info["team_id"], owner=True)).team
    return json_response(await rotate_and_record(request, team_id=team.id, user_id=user_id, actor=actor))


async def rotate_and_record(request: web.Request, *, team_id: uuid.UUID, user_id: uuid.UUID | None, actor: str
                            ) -> TeamRotationReport:
    """Rotate the team's data key, then audit it and tell its members (owners' and operators' route)."""
    report = await rotate_team_key(request.config_dict[SESSIONMAKER], keyring=request.config_dict[KEYRING],
                                   bus=request.config_dict[CHANGES], team_id=team_id)
    async with request.config_dict[SESSIONMAKER]() as session:
        record(session, user_id=user_id, actor=actor, action="team.rotate_key", team_id=team_id,
               details={"rotated": report.rotated, "resumed": report.resumed})
        await commit_team(request, session, team_id)
    return report


@api.route("POST", CONFIGS + "/export", summary="Export the team's configurations (owners); keys sealed under the "
           "passphrase in the body", body=ExportRequest, response=ExportDocument, errors=(*USER_ERRORS, 404, 422, 429))
async def export_team_handler(request: web.Request) -> web.Response:
    body = await parse_body(request, ExportRequest) if request.body_exists else ExportRequest()
    user_id = limited(request)
    check_key_export(request, body.passphrase)
    async with request.config_dict[SESSIONMAKER]() as session:
        document = await export_team_configurations(session, keyring=request.config_dict[KEYRING], user_id=user_id,
                                                    team_id=request.match_info["team_id"],
                                                    passphrase=body.passphrase)
    return json_response(document, headers=NO_STORE)


@api.route("POST", CONFIGS + "/import", summary="Import an export into the team (owners): merge by name, keys "
           "restored only with the right passphrase", body=ImportRequest, response=ImportReport,
           errors=(400, *USER_ERRORS, 404, 409, 422, 429))
async def import_team_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    body = await parse_body(request, ImportRequest)
    limited(request)
    async with request.config_dict[SESSIONMAKER]() as session:
        report, member = await import_team_configurations(
            session, keyring=request.config_dict[KEYRING], policy=request.config_dict[POLICY], user_id=user_id,
            team_id=request.match_info["team_id"], document=body.data, passphrase=body.passphrase,
            dry_run=body.dry_run, overwrite=body.overwrite)
        if not body.dry_run:
            record(session, user_id=user_id, actor=actor, action="team.import", team_id=member.team.id,
                   details={"created": len(report.created), "updated": len(report.updated)})
            await commit_team(request, session, member.team.id)
    return json_response(report)
