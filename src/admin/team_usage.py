"""Team usage: GET /api/teams/{id}/usage — owners see every member's use of the team's configurations, members
their own; non-members get 404 as for a team that does not exist."""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from admin.registry import ApiRegistry
from admin.teams import TEAM
from admin.usage import NO_CONFIGURATION_KEY, UsageGroup, UsageQuery, UsageReport, UsageTotals, totals_of
from gateway.configurations.usage_report import UsageRow, group_names, usage_rows
from gateway.teams.membership import membership
from gateway.web.appkeys import SESSIONMAKER
from gateway.web.auth import caller_of
from gateway.web.requests import parse_query

api = ApiRegistry(tag="teams")


class TeamUsageQuery(UsageQuery):
    """Period [since, until) — ISO 8601, UTC when no zone is given — and optional grouping (`day` gives the
    team's cost per day)."""

    group_by: Literal["member", "configuration", "day"] | None = None  # type: ignore[assignment]  # one more group


class TeamUsageGroup(UsageGroup):
    member_name: str | None = None


class TeamUsageReport(UsageReport):
    team_id: str
    scope: Literal["team", "own"]  # an owner sees the whole team's use, a member their own
    groups: list[TeamUsageGroup]  # type: ignore[assignment]  # the groups name their member too


def _group(row: UsageRow, names: dict[str, str], group_by: str | None) -> TeamUsageGroup:
    key = row.key if row.key is not None else NO_CONFIGURATION_KEY
    name = names.get(key)
    return TeamUsageGroup(key=key, configuration_name=name if group_by == "configuration" else None,
                          member_name=name if group_by == "member" else None, **totals_of(row))


@api.route("GET", TEAM + "/usage", summary="Use of a team's configurations: every member's for owners, "
           "your own for members", query=TeamUsageQuery, response=TeamUsageReport, errors=(400, 404))
async def team_usage_handler(request: web.Request) -> web.Response:
    user_id = caller_of(request).require_user()
    query = parse_query(request, TeamUsageQuery)
    assert query.since is not None and query.until is not None  # set by the validator
    async with request.config_dict[SESSIONMAKER]() as session:
        found = await membership(session, user_id=user_id, team_id=request.match_info["team_id"])
        whose = None if found.is_owner else user_id
        (total,) = await usage_rows(session, user_id=whose, team_id=found.team.id, since=query.since,
                                    until=query.until)
        groups = await usage_rows(session, user_id=whose, team_id=found.team.id, since=query.since,
                                  until=query.until, group_by=query.group_by) if query.group_by else []
        names = await group_names(session, group_by=query.group_by, keys=[g.key for g in groups if g.key])
    report = TeamUsageReport(
        team_id=str(found.team.id), scope="team" if found.is_owner else "own", since=query.since, until=query.until,
        group_by=query.group_by, totals=UsageTotals(**totals_of(total)),
        groups=[_group(g, names, query.group_by) for g in groups],
    )
    return web.Response(text=report.model_dump_json(), content_type="application/json")
