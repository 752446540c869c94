"""The pure rules of selection with teams: names, qualified names, ids, defaults and fallback chains over one
user's cached set (the database-backed paths are tests/proxy/test_teams.py and test_team_fallbacks.py)."""

from __future__ import annotations

import uuid

import pytest

from gateway.errors import NotFound
from gateway.proxy.cache import CachedConfiguration, CachedTeam, index
from gateway.proxy.selection import attempt_chain, by_header

ACME = CachedTeam(id=uuid.uuid4(), name="acme", wrapped_key="wrapped")
OTHER = CachedTeam(id=uuid.uuid4(), name="other", wrapped_key="wrapped")


def configuration(name: str, team: CachedTeam | None = None, *, fallbacks: tuple[str, ...] = (),
                  is_default: bool = False) -> CachedConfiguration:
    config_id = uuid.uuid4()
    return CachedConfiguration(
        id=config_id, id_str=str(config_id), user_id=None if team else uuid.uuid4(), name=name, provider="custom",
        model="m", api_key_encrypted="v1.x.y", base_url="http://127.0.0.1:9/v1", wire="openai",
        litellm_provider="custom_openai", is_default=is_default, is_active=True, fallback_ids=fallbacks, created=0,
        binding=b"", refusal=None, team=team)


def test_names_ids_and_labels() -> None:
    own = configuration("gpt", is_default=True)
    shared = configuration("gpt", ACME)
    only_team = configuration("only-team", ACME)
    configurations = index([own], [shared, only_team])
    assert configurations.by_name["gpt"] is own
    assert configurations.by_name["acme/gpt"] is shared
    assert "only-team" not in configurations.by_name
    assert by_header(configurations, shared.id_str.upper()) is shared
    with pytest.raises(NotFound):
        by_header(configurations, "only-team")
    assert [c.label for c in configurations.active()] == ["acme/gpt", "acme/only-team", "gpt"]


def test_default_is_own_flagged_else_the_chosen_team_configuration() -> None:
    shared = configuration("shared", ACME)
    assert index([configuration("mine")], [shared], member_default_id=shared.id).default is shared
    flagged = configuration("mine", is_default=True)
    assert index([flagged], [shared], member_default_id=shared.id).default is flagged
    assert index([], [], member_default_id=shared.id).default is None  # not among the usable ones


def test_fallback_chains_respect_teams() -> None:
    same = configuration("same", ACME)
    other = configuration("other", OTHER)
    personal = configuration("personal")
    team_primary = configuration("primary", ACME, fallbacks=(personal.id_str, other.id_str, same.id_str))
    own_primary = configuration("own", fallbacks=(other.id_str, same.id_str, str(uuid.uuid4())))
    configurations = index([personal, own_primary], [same, other, team_primary])
    assert attempt_chain(configurations, team_primary) == [team_primary, same]
    assert attempt_chain(configurations, own_primary) == [own_primary, other, same]
    # Membership of OTHER gone: its configuration is no longer in the set and is skipped.
    left = index([personal, own_primary], [same, team_primary])
    assert attempt_chain(left, own_primary) == [own_primary, same]
