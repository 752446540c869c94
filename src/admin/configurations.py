"""Configuration endpoints: CRUD, the one default, bulk delete, stats. They act on the caller's own
configurations and, under the team roles (gateway.teams), on configurations of the caller's teams: owners edit
and delete, members read (masked) and make one their own default. Every write is audited and announced to the
proxy's caches in the same commit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import AfterValidator, BaseModel, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from admin.checks import run_test_on_save
from admin.registry import ID, ApiRegistry
from admin.schemas import Public, StrictBody, json_response, optional, printable
from gateway.accounts.audit import record
from gateway.configurations.crud import (
    configuration_names,
    configuration_stats,
    create_configuration,
    delete_configurations,
    lock_user,
    masked_key,
    search_configurations,
    update_configuration,
)
from gateway.crypto.keyring import KeyRing
from gateway.crypto.masking import mask_url_secrets
from gateway.errors import NotFound
from gateway.store.changes import Change
from gateway.store.models import LLMConfiguration
from gateway.teams import defaults
from gateway.teams.configurations import (
    Access,
    KeyReader,
    accessible,
    delete_team_configuration,
    update_team_configuration,
)
from gateway.teams.membership import changes_for, member_ids, memberships
from gateway.web.appkeys import CHANGES, KEYRING, POLICY, SESSIONMAKER
from gateway.web.auth import caller_of
from gateway.web.requests import parse_body, parse_query

api = ApiRegistry(tag="configurations")
BASE = "/llm-configurations"
ITEM = f"{BASE}/{ID}"
USER_ERRORS = (403,)  # the bare operator token has no configurations of its own

Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(printable)]
ProviderId = Annotated[str, Field(min_length=1, max_length=50, description="A provider id from GET /api/providers")]
ModelName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(printable)]
ApiKey = Annotated[str, Field(min_length=1, max_length=4096)]
BaseUrl = Annotated[str, Field(min_length=1, max_length=2048, description="http(s); private addresses only when "
                                                                           "ALLOW_PRIVATE_BASE_URLS is on")]
FallbackIds = Annotated[list[uuid.UUID], Field(max_length=100, description="Your own configurations, in order")]
Filter = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(printable)]


class ConfigurationCreate(StrictBody):
    name: Name
    provider: ProviderId
    model: ModelName
    api_key: ApiKey
    base_url: BaseUrl | None = None
    is_default: bool = Field(default=False, description="A user's first configuration is the default regardless")
    is_active: bool = True
    fallback_ids: FallbackIds = Field(default_factory=list)
    test_on_save: bool = Field(default=False, description="Test the configuration once it is saved")


class ConfigurationUpdate(StrictBody):
    """A partial update: absent fields are left as they are."""

    name: Name | None = optional()
    provider: ProviderId | None = optional()
    model: ModelName | None = optional()
    api_key: ApiKey | None = Field(
        default=None, description="Absent, null, or exactly the masked form keeps the stored key; "
                                  "other placeholders are refused")
    base_url: BaseUrl | None = Field(default=None, description="null removes it")
    is_default: bool | None = optional()
    is_active: bool | None = optional()
    fallback_ids: FallbackIds | None = optional()
    test_on_save: bool = Field(default=False, description="Test the configuration once it is saved")

    @field_validator("name", "provider", "model", "is_default", "is_active", "fallback_ids")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only for values the client sent: null here would mean "erase", which these fields cannot be.
        if value is None:
            raise ValueError("must not be null")
        return value


class TeamRef(Public):
    id: uuid.UUID
    name: str


class ConfigurationPublic(Public):
    id: uuid.UUID
    name: str
    provider: str
    model: str
    base_url: str | None
    is_default: bool
    is_active: bool
    fallback_ids: list[uuid.UUID]
    api_key: str = Field(
        description="Masked: first 4 and last 4 characters, or **** for keys shorter than 16 characters"
    )
    test_status: str = Field(description="untested, success, failed or rate_limited")
    test_message: str | None
    test_latency_ms: int | None
    tested_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime
    updated_at: datetime
    team: TeamRef | None = Field(default=None, description="The team it belongs to; null for your own")


ROW_FIELDS = tuple(name for name in ConfigurationPublic.model_fields if name not in ("api_key", "team"))
PERSONAL = "personal"


class ConfigurationList(Public):
    items: list[ConfigurationPublic]
    total: int


class ConfigurationQuery(BaseModel):
    provider: Filter | None = optional()
    q: Filter | None = optional(description="Substring of the name or the model")
    status: Filter | None = optional(description="Test status")
    is_active: bool | None = optional()
    team: Annotated[str, Field(pattern=r"^(personal|[0-9a-fA-F-]{36})$")] | None = optional(
        description="`personal` for your own only, or a team id for that team's only; absent: both")
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class BulkDelete(StrictBody):
    ids: list[uuid.UUID] = Field(min_length=1, max_length=1000)


class BulkDeleted(Public):
    deleted: list[uuid.UUID]
    not_found: list[uuid.UUID] = Field(description="Ids that are not yours or do not exist")


class ConfigurationStats(Public):
    total: int
    active: int
    inactive: int
    default_id: uuid.UUID | None
    by_status: dict[str, int]
    by_provider: dict[str, int]


def to_public(keyring: KeyRing, row: LLMConfiguration) -> ConfigurationPublic:
    """A redacted copy of a row: its plain fields and the masked key, never the row itself."""
    return ConfigurationPublic(**{name: getattr(row, name) for name in ROW_FIELDS}, api_key=masked_key(keyring, row))


async def public_rows(session: AsyncSession, keyring: KeyRing, rows: list[LLMConfiguration], *,
                      user_id: uuid.UUID) -> list[ConfigurationPublic]:
    """Redacted copies of personal and team rows as `user_id` sees them: a team row says its team, and is
    `is_default` when it is that user's default."""
    if all(row.team_id is None for row in rows):
        return [to_public(keyring, row) for row in rows]
    teams = await memberships(session, user_id=user_id)
    default_id = await defaults.team_default_id(session, user_id=user_id)
    reader = KeyReader(session, keyring)
    items = []
    for row in rows:
        if row.team_id is None:
            items.append(to_public(keyring, row))
            continue
        fields = {name: getattr(row, name) for name in ROW_FIELDS} | {"is_default": row.id == default_id}
        if row.base_url and not teams[row.team_id].is_owner:
            # Owners typed it and see it whole; a member may use it, not read a credential it may carry.
            fields["base_url"] = mask_url_secrets(row.base_url)
        team = teams[row.team_id].team
        items.append(ConfigurationPublic(**fields, api_key=await reader.masked(row),
                                         team=TeamRef(id=team.id, name=team.name)))
    return items


async def _one_public(session: AsyncSession, request: web.Request, config: LLMConfiguration,
                      user_id: uuid.UUID) -> ConfigurationPublic:
    return (await public_rows(session, request.config_dict[KEYRING], [config], user_id=user_id))[0]


async def _commit_team(request: web.Request, session: AsyncSession, access: Access, user_id: uuid.UUID) -> None:
    """Commit a write to a team configuration, announced to every member (and to the caller's own caches)."""
    assert access.team is not None
    members = await member_ids(session, team_id=access.team.team.id)
    await request.config_dict[CHANGES].commit(session, Change("configurations", str(user_id)),
                                              *changes_for(members))


def _caller(request: web.Request) -> tuple[uuid.UUID, str]:
    caller = caller_of(request)
    return caller.require_user(), caller.user_name


async def _commit(request: web.Request, session: AsyncSession, user_id: uuid.UUID) -> None:
    await request.config_dict[CHANGES].commit(session, Change("configurations", str(user_id)))


@api.route("GET", BASE, summary="List your configurations (default first, then by name)", query=ConfigurationQuery,
           response=ConfigurationList, errors=(400, *USER_ERRORS, 404))
async def list_configurations_handler(request: web.Request) -> web.Response:
    user_id, _ = _caller(request)
    query = parse_query(request, ConfigurationQuery)
    filters = query.model_dump(exclude={"team"})
    async with request.config_dict[SESSIONMAKER]() as session:
        teams = await memberships(session, user_id=user_id)
        if query.team is None:
            team_ids = list(teams)
        elif query.team == PERSONAL:
            team_ids = []
        else:
            team_ids = [t for t in teams if str(t) == query.team.lower()]
            if not team_ids:
                raise NotFound("No team with this id", param="team")
        rows, total = await search_configurations(session, user_id=user_id, team_ids=team_ids,
                                                  personal=query.team in (None, PERSONAL), **filters)
        items = await public_rows(session, request.config_dict[KEYRING], rows, user_id=user_id)
    return json_response(ConfigurationList(items=items, total=total))


@api.route("POST", BASE, summary="Create a configuration", body=ConfigurationCreate, response=ConfigurationPublic,
           status=201, errors=(*USER_ERRORS, 409))
async def create_configuration_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    body = await parse_body(request, ConfigurationCreate)
    async with request.config_dict[SESSIONMAKER]() as session:
        config = await create_configuration(
            session, keyring=request.config_dict[KEYRING], policy=request.config_dict[POLICY], user_id=user_id,
            **body.model_dump(exclude={"test_on_save"}),
        )
        record(session, user_id=user_id, actor=actor, action="create", configuration_id=config.id,
                     details={"name": config.name, "provider": config.provider, "model": config.model})
        await _commit(request, session, user_id)
        if body.test_on_save:
            await run_test_on_save(request, session, config)
    return json_response(to_public(request.config_dict[KEYRING], config), 201)


@api.route("GET", "/llm-configurations/stats", summary="Counts over your configurations",
           response=ConfigurationStats, errors=USER_ERRORS)
async def configuration_stats_handler(request: web.Request) -> web.Response:
    user_id, _ = _caller(request)
    async with request.config_dict[SESSIONMAKER]() as session:
        stats = await configuration_stats(session, user_id=user_id)
    return json_response(ConfigurationStats(total=stats.total, active=stats.active, inactive=stats.total - stats.active,
                                      default_id=stats.default_id, by_status=stats.by_status,
                                      by_provider=stats.by_provider))


@api.route("POST", "/llm-configurations/bulk-delete", summary="Delete several configurations", body=BulkDelete,
           response=BulkDeleted, errors=USER_ERRORS)
async def bulk_delete_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    body = await parse_body(request, BulkDelete)
    wanted = list(dict.fromkeys(body.ids))
    async with request.config_dict[SESSIONMAKER]() as session:
        deleted = await _delete(request, session, user_id=user_id, actor=actor, ids=wanted)
    gone = set(deleted)
    deleted, missing = [i for i in wanted if i in gone], [i for i in wanted if i not in gone]
    return json_response(BulkDeleted(deleted=deleted, not_found=missing))


@api.route("GET", ITEM, summary="One configuration, its key masked", response=ConfigurationPublic,
           errors=USER_ERRORS)
async def get_configuration_handler(request: web.Request) -> web.Response:
    user_id, _ = _caller(request)
    async with request.config_dict[SESSIONMAKER]() as session:
        access = await accessible(session, user_id=user_id, configuration_id=request.match_info["id"])
        return json_response(await _one_public(session, request, access.configuration, user_id))


@api.route("PUT", ITEM, summary="Update a configuration (partial, like PATCH)", body=ConfigurationUpdate,
           response=ConfigurationPublic, errors=(*USER_ERRORS, 409))
@api.route("PATCH", ITEM, summary="Update a configuration (partial)", body=ConfigurationUpdate,
           response=ConfigurationPublic, errors=(*USER_ERRORS, 409))
async def update_configuration_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    body = await parse_body(request, ConfigurationUpdate)
    values = body.model_dump(include=body.model_fields_set - {"api_key", "test_on_save"})
    async with request.config_dict[SESSIONMAKER]() as session:
        await lock_user(session, user_id=user_id)
        access = await accessible(session, user_id=user_id, configuration_id=request.match_info["id"],
                                  for_update=True)
        if access.team is not None:
            config = await _update_team(request, session, access, user_id=user_id, actor=actor, values=values,
                                        api_key=body.api_key)
        else:
            config, changed = await update_configuration(
                session, keyring=request.config_dict[KEYRING], policy=request.config_dict[POLICY], user_id=user_id,
                configuration_id=access.configuration.id, values=values, api_key=body.api_key,
            )
            if changed:
                record(session, user_id=user_id, actor=actor, action="update", configuration_id=config.id,
                       details={"fields": changed})
            await _commit(request, session, user_id)
        if body.test_on_save:
            await run_test_on_save(request, session, config)
        return json_response(await _one_public(session, request, config, user_id))


async def _update_team(request: web.Request, session: AsyncSession, access: Access, *, user_id: uuid.UUID,
                       actor: str, values: dict[str, Any], api_key: str | None) -> LLMConfiguration:
    """PATCH on a team configuration: `is_default` is the caller's own choice (any member); anything else is an
    owner's edit (403 for members)."""
    config = access.configuration
    wants_default = values.pop("is_default", None)
    if values or api_key is not None:
        changed = await update_team_configuration(session, keyring=request.config_dict[KEYRING],
                                                  policy=request.config_dict[POLICY], access=access, values=values,
                                                  api_key=api_key)
        if changed:
            record(session, user_id=user_id, actor=actor, action="update", configuration_id=config.id,
                   team_id=config.team_id, details={"fields": changed})
    if wants_default is True:
        await defaults.set_default(session, user_id=user_id, configuration_id=config.id)
    elif wants_default is False:
        await defaults.clear_team_default(session, user_id=user_id, configuration_id=config.id)
    await _commit_team(request, session, access, user_id)
    return config


@api.route("PUT", f"{ITEM}/set-default", summary="Make this your only default configuration",
           response=ConfigurationPublic, errors=(*USER_ERRORS, 409))
async def set_default_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    async with request.config_dict[SESSIONMAKER]() as session:
        access = await defaults.set_default(session, user_id=user_id, configuration_id=request.match_info["id"])
        config = access.configuration
        record(session, user_id=user_id, actor=actor, action="set_default", configuration_id=config.id,
               team_id=config.team_id, details={"name": config.name})
        await _commit(request, session, user_id)
        return json_response(await _one_public(session, request, config, user_id))


@api.route("DELETE", ITEM, summary="Delete a configuration", status=204, errors=USER_ERRORS)
async def delete_configuration_handler(request: web.Request) -> web.Response:
    user_id, actor = _caller(request)
    try:
        config_id = uuid.UUID(request.match_info["id"])
    except ValueError:
        raise NotFound("No configuration with this id") from None
    async with request.config_dict[SESSIONMAKER]() as session:
        if await _delete(request, session, user_id=user_id, actor=actor, ids=[config_id]):
            return web.Response(status=204)
        access = await accessible(session, user_id=user_id, configuration_id=config_id, for_update=True)
        if access.team is None:
            raise NotFound("No configuration with this id")
        members = await member_ids(session, team_id=access.team.team.id)
        await delete_team_configuration(session, access=access)
        record(session, user_id=user_id, actor=actor, action="delete", configuration_id=config_id,
               team_id=access.team.team.id, details={"name": access.configuration.name})
        await request.config_dict[CHANGES].commit(session, *changes_for(members))
    return web.Response(status=204)


async def _delete(
    request: web.Request, session: AsyncSession, *, user_id: uuid.UUID, actor: str, ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    """Delete, audit and commit; returns the ids that were the caller's."""
    await lock_user(session, user_id=user_id)  # before reading the names, so they are current
    names = await configuration_names(session, user_id=user_id, ids=ids)
    deleted = await delete_configurations(session, user_id=user_id, ids=list(names))
    for config_id in deleted:
        record(session, user_id=user_id, actor=actor, action="delete", configuration_id=config_id,
                     details={"name": names[config_id]})
    if deleted:
        await _commit(request, session, user_id)
    return deleted
