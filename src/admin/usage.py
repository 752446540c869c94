"""Usage reports: GET /api/usage and GET /api/llm-configurations/{id}/usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, model_validator

from admin.registry import ApiRegistry
from admin.schemas import Public
from gateway.configurations.crud import configuration_names, get_configuration
from gateway.configurations.usage_report import UsageRow, usage_rows
from gateway.web.appkeys import SESSIONMAKER
from gateway.web.auth import caller_of
from gateway.web.requests import parse_query

api = ApiRegistry(tag="usage")
DEFAULT_PERIOD = timedelta(days=30)
# The group of requests refused before a configuration was chosen (no selection, a refused field, a 413...).
NO_CONFIGURATION_KEY = "none"
NO_CONFIGURATION_NAME = "(no configuration)"


class UsageQuery(BaseModel):
    """Period [since, until) — ISO 8601, UTC when no zone is given — and optional grouping."""

    model_config = ConfigDict(extra="forbid")
    since: datetime | None = None
    until: datetime | None = None
    group_by: Literal["configuration", "day"] | None = None

    @model_validator(mode="after")
    def _period(self) -> UsageQuery:
        until = _utc(self.until) if self.until is not None else datetime.now(UTC)
        since = _utc(self.since) if self.since is not None else until - DEFAULT_PERIOD
        if since >= until:
            raise ValueError("'since' must be before 'until'")
        self.since, self.until = since, until
        return self


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UsageTotals(Public):
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    avg_latency_ms: float


class UsageGroup(UsageTotals):
    key: str
    configuration_name: str | None = None


class UsageReport(Public):
    since: datetime
    until: datetime
    group_by: str | None
    totals: UsageTotals
    groups: list[UsageGroup]


def totals_of(row: UsageRow) -> dict[str, object]:
    return {"requests": row.requests, "errors": row.errors, "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens, "total_tokens": row.prompt_tokens + row.completion_tokens,
            "cost_usd": round(row.cost_usd, 8), "avg_latency_ms": row.avg_latency_ms}


def _group(row: UsageRow, names: dict[str, str], group_by: str | None) -> UsageGroup:
    if row.key is None:
        name = NO_CONFIGURATION_NAME if group_by == "configuration" else None
        return UsageGroup(key=NO_CONFIGURATION_KEY, configuration_name=name, **totals_of(row))
    return UsageGroup(key=row.key, configuration_name=names.get(row.key), **totals_of(row))


async def _report(request: web.Request, configuration_id: str | None) -> web.Response:
    user_id = caller_of(request).require_user()
    query = parse_query(request, UsageQuery)
    assert query.since is not None and query.until is not None  # set by the validator
    async with request.config_dict[SESSIONMAKER]() as session:
        config_uuid = None
        if configuration_id is not None:
            config_uuid = (await get_configuration(session, user_id=user_id, configuration_id=configuration_id)).id
        period = partial(usage_rows, session, user_id=user_id, since=query.since, until=query.until,
                         configuration_id=config_uuid)
        (total,) = await period()
        groups = await period(group_by=query.group_by) if query.group_by else []
        # Groups of deleted configurations keep only their id.
        by_id = await configuration_names(session, user_id=user_id) if query.group_by == "configuration" else {}
    names = {str(cid): name for cid, name in by_id.items()}
    report = UsageReport(
        since=query.since, until=query.until, group_by=query.group_by, totals=UsageTotals(**totals_of(total)),
        groups=[_group(g, names, query.group_by) for g in groups],
    )
    return web.Response(text=report.model_dump_json(), content_type="application/json")


@api.route("GET", "/usage", summary="Your requests, tokens, cost and errors over a period", query=UsageQuery,
           response=UsageReport, errors=(400,))
async def usage_handler(request: web.Request) -> web.Response:
    return await _report(request, None)


@api.route("GET", "/llm-configurations/{id}/usage", summary="Usage of one configuration over a period",
           query=UsageQuery, response=UsageReport, errors=(400, 404))
async def configuration_usage_handler(request: web.Request) -> web.Response:
    return await _report(request, request.match_info["id"])
