"""`llm-gateway serve` starts again over the rows of migration 0008, on SQLite and PostgreSQL: a pending
invitation, a held team name and the usage of a deleted member are read back by a fresh process as they were
left (the invitation listed and accepted, the old label a 404, the spend still the team's)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.cli.live import Gateway, start_fake, stop_fake
from tests.conftest import ADMIN_TOKEN
from tests.leakwatch import watched

KEY = "sk-restart-teams-key-0000000000001"
MESSAGES = [{"role": "user", "content": "hi"}]


def _ok(answer: tuple[int, Any], status: int = 200) -> Any:
    assert answer[0] == status, answer
    return answer[1]


def _team_requests(gateway: Gateway, token: str, team_id: str) -> int:
    usage = _ok(gateway.call("GET", f"/api/teams/{team_id}/usage?group_by=member", token))
    return int(usage["totals"]["requests"])


def test_serve_restarts_over_invitations_held_names_and_kept_usage(
        tmp_path: Path, database_url: str, key_ring: str) -> None:
    watched(KEY, "tests/cli/test_teams_restart.py")
    fake, fake_url = start_fake(KEY)
    env = {"LLM_GATEWAY_DATABASE_URL": database_url, "LLM_GATEWAY_ENCRYPTION_KEYS": key_ring,
           "LLM_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN, "LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS": "true",
           "LLM_GATEWAY_USAGE_FLUSH_INTERVAL_S": "0.05"}
    try:
        gateway = Gateway(tmp_path, **env)
        try:
            users = {name: _ok(gateway.call("POST", "/api/admin/users", ADMIN_TOKEN, {"name": name}), 201)
                     for name in ("owner", "member", "invitee")}
            owner, member, invitee = (users[n]["token"] for n in ("owner", "member", "invitee"))
            team = _ok(gateway.call("POST", "/api/teams", owner, {"name": "acme"}), 201)
            _ok(gateway.call("POST", f"/api/admin/teams/{team['id']}/members", ADMIN_TOKEN, {"user": "member"}), 201)
            _ok(gateway.call("POST", f"/api/teams/{team['id']}/llm-configurations", owner, {
                "name": "shared", "provider": "custom", "model": "m", "api_key": KEY, "base_url": fake_url}), 201)
            _ok(gateway.call("POST", "/v1/chat/completions", member, {"model": "acme/shared", "messages": MESSAGES}))
            deadline = time.monotonic() + 30
            while _team_requests(gateway, owner, team["id"]) < 1:
                assert time.monotonic() < deadline, "no usage written"
                time.sleep(0.05)
            _ok(gateway.call("POST", f"/api/teams/{team['id']}/members", owner, {"user": "invitee"}), 202)
            _ok(gateway.call("PATCH", f"/api/teams/{team['id']}", owner, {"name": "acme2"}))
            _ok(gateway.call("DELETE", f"/api/admin/users/{users['member']['id']}", ADMIN_TOKEN), 204)
        finally:
            gateway.stop()
        again = Gateway(tmp_path, **env)
        try:
            assert _team_requests(again, owner, team["id"]) == 1  # the deleted member's spend is the team's
            status, body = again.call("POST", "/v1/chat/completions", owner, {"model": "acme/shared",
                                                                               "messages": MESSAGES})
            assert status == 404 and body["error"]["code"] == "team_label_gone", body
            status, body = again.call("POST", "/v1/chat/completions", owner, {"model": "acme2/shared",
                                                                               "messages": MESSAGES})
            assert status == 200 and body["model"] == "m", body  # the team configuration itself survived
            status, body = again.call("POST", "/api/teams", invitee, {"name": "acme"})
            assert status == 409 and body["error"]["code"] == "team_name_reserved", body
            (invitation,) = _ok(again.call("GET", "/api/invitations", invitee))["items"]
            assert invitation["team"] == {"id": team["id"], "name": "acme2"}
            _ok(again.call("POST", f"/api/invitations/{invitation['id']}/accept", invitee))
            assert _ok(again.call("GET", f"/api/teams/{team['id']}", invitee))["role"] == "member"
        finally:
            again.stop()
    finally:
        stop_fake(fake)
