"""Which configuration serves a request (DESIGN §4, §8), first match wins: the X-LLM-Configuration header, the
body's `model` naming a configuration, the conversation's binding, the caller's default. The caller's set is
their own configurations and their teams' (by id, or by `<team>/<name>`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from gateway.errors import BadRequest, NotFound
from gateway.proxy.cache import CachedConfiguration, UserConfigurations

CONFIGURATION_HEADER = "X-LLM-Configuration"
CONVERSATION_HEADER = "X-Conversation-Id"
NOTHING_SELECTED = (
    "No LLM configuration selected: send the header 'X-LLM-Configuration: <id or name>', set 'model' to the "
    "name of one of your configurations, bind the conversation of 'X-Conversation-Id' with "
    "PUT /api/conversations/{id}/llm-configuration, or make one of your configurations the default"
)

BindingLookup = Callable[[str], Awaitable[uuid.UUID | None]]


def _inactive(configuration: CachedConfiguration, param: str) -> BadRequest:
    return BadRequest(
        f"LLM configuration '{configuration.name}' is inactive; activate it or choose another",
        param=param,
        code="configuration_inactive",
    )


def _label_gone(configurations: UserConfigurations, value: str, param: str) -> None:
    """404 for `<team>/<name>` whose team gave that name up since (renamed or deleted): the label meant that
    team, and must not quietly mean the caller's default or anything else now."""
    team, slash, _ = value.partition("/")
    if slash and team in configurations.held:
        raise NotFound(f"Team '{team}' was renamed or deleted: '{value}' no longer names a configuration; use the "
                       "team's current name (GET /api/teams)", param=param, code="team_label_gone")


def by_header(configurations: UserConfigurations, value: str) -> CachedConfiguration:
    """The configuration an explicit header names by id or name; 404 when it is not the caller's to use."""
    found = configurations.by_id.get(value.lower()) or configurations.by_name.get(value)
    if found is None:
        _label_gone(configurations, value, CONFIGURATION_HEADER)
        raise NotFound(f"No LLM configuration '{value}' among yours", param=CONFIGURATION_HEADER,
                       code="configuration_not_found")
    if not found.is_active:
        raise _inactive(found, CONFIGURATION_HEADER)
    return found


async def select_configuration(
    configurations: UserConfigurations,
    *,
    header: str | None,
    model: object,
    conversation_id: str | None,
    binding: BindingLookup,
) -> CachedConfiguration:
    """The configuration that serves this request, or a 400/404 that says what to set."""
    if header:
        return by_header(configurations, header.strip())
    if isinstance(model, str) and model:
        named = configurations.by_name.get(model)
        if named is not None:
            if not named.is_active:
                raise _inactive(named, "model")
            return named
        if configurations.held:
            _label_gone(configurations, model, "model")
    if conversation_id:
        bound_id = await binding(conversation_id)
        bound = configurations.by_id.get(str(bound_id)) if bound_id is not None else None
        # A binding to a configuration since deactivated falls through to the default.
        if bound is not None and bound.is_active:
            return bound
    default = configurations.default
    if default is not None and default.is_active:
        return default
    raise BadRequest(NOTHING_SELECTED, param=CONFIGURATION_HEADER, code="no_configuration_selected")


def attempt_chain(configurations: UserConfigurations, chosen: CachedConfiguration) -> list[CachedConfiguration]:
    """The chosen configuration, then its active fallbacks in order, each once and only those the caller may use
    now (a team's configuration is skipped once the caller has left the team). A team's configuration falls
    back only to its own team's; a personal one to any the caller may use."""
    chain = [chosen]
    seen = {chosen.id_str}
    team = chosen.team
    for fallback_id in chosen.fallback_ids:
        fallback = configurations.by_id.get(fallback_id.lower())
        if fallback is None or not fallback.is_active or fallback.id_str in seen:
            continue
        if team is not None and (fallback.team is None or fallback.team.id != team.id):
            continue
        chain.append(fallback)
        seen.add(fallback.id_str)
    return chain
