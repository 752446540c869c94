"""`serve`'s start-up check of stored key ids reads each id as what it is: a personal configuration's and a team
data key's name ring keys (refused when the ring lacks one), a team configuration's names its team's data key (a
missing one is reported by team, and the gateway starts; the encryption status names it too). `keys rotate` fails
when a team data key cannot be re-wrapped, as it does for a configuration it cannot re-encrypt. On SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from gateway.cli.bootstrap import StartupError, check_database
from gateway.crypto.keyring import KeyRing, generate_key_entry, row_binding
from gateway.crypto.rotation import RotationReport
from gateway.crypto.team_keys import create_team_key, encrypt_with_data_key
from gateway.settings import Settings, parse_key_ring
from gateway.store.db import make_engine, make_sessionmaker
from gateway.store.models import LLMConfiguration, Team, TeamMember, User
from tests.cli.live import Gateway
from tests.cli.test_cli import cli
from tests.leakwatch import LeakWatch, new_watched_key


async def _seed(url: str, ring: KeyRing, *, teams: int = 1, lost_data_keys: int = 0, personal: bool = True) -> None:
    """A user with one personal configuration (unless not `personal`), and `teams` teams of one configuration each
    under its data key (wrapped by `ring`); `lost_data_keys` more configurations of the last team name a data key
    that is gone."""
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        user = User(id=uuid.uuid4(), name=f"u{uuid.uuid4().hex[:6]}")
        session.add(user)
        await session.flush()
        cid = uuid.uuid4()
        if personal:
            session.add(LLMConfiguration(
                id=cid, user_id=user.id, name="mine", provider="openai", model="gpt-4o", key_id=ring.primary_id,
                api_key_encrypted=ring.encrypt(new_watched_key(), binding=row_binding(cid, user.id))))
        for n in range(teams):
            team = Team(id=uuid.uuid4(), name=f"team-{n}")
            session.add(team)
            await session.flush()
            session.add(TeamMember(team_id=team.id, user_id=user.id, role="owner"))
            team_key_id, data_key = await create_team_key(session, keyring=ring, team_id=team.id)
            for m in range(1 + (lost_data_keys if n == teams - 1 else 0)):
                config = LLMConfiguration(id=uuid.uuid4(), team_id=team.id, name=f"shared-{m}", provider="openai",
                                          model="gpt-4o")
                encrypt_with_data_key(data_key, team_key_id, config, new_watched_key())
                if m:
                    config.key_id = "tk" + uuid.uuid4().hex[:16]  # a data key this team never had
                session.add(config)
        await session.commit()
    await engine.dispose()


def _with_ring(settings: Settings, entries: str) -> Settings:
    return settings.model_copy(update={"encryption_keys": SecretStr(entries)})


async def test_team_rows_do_not_stop_a_restart(settings: Settings) -> None:
    ring = KeyRing.from_entries(settings.key_ring_entries())
    await _seed(settings.database_url, ring, teams=2)
    # Before the fix: "the key ring lacks keys still in use: 1 rows under key id 'tk…'" for each team.
    assert await check_database(settings, apply_migrations=False) == []


async def test_a_ring_key_that_wraps_a_team_data_key_is_required(settings: Settings) -> None:
    old, new = generate_key_entry("old"), generate_key_entry("new")
    # The personal row is under `new`, the team's data key wrapped by `old`: the ring needs both.
    both = KeyRing.from_entries(parse_key_ring(f"{new},{old}"))
    await _seed(settings.database_url, both, teams=0)
    await _seed(settings.database_url, KeyRing.from_entries(parse_key_ring(old)), teams=1)
    assert await check_database(_with_ring(settings, f"{new},{old}"), apply_migrations=False) == []
    with pytest.raises(StartupError) as refused:
        await check_database(_with_ring(settings, new), apply_migrations=False)
    message = str(refused.value)
    assert "1 configuration and 1 team data key under key id 'old'" in message, message
    assert "'tk" not in message and "LLM_GATEWAY_ENCRYPTION_KEYS" in message


async def test_a_team_configuration_whose_data_key_is_gone_is_reported_and_serve_starts(
        settings: Settings, key_ring: str, tmp_path: Path, key_watch: LeakWatch) -> None:
    ring = KeyRing.from_entries(settings.key_ring_entries())
    await _seed(settings.database_url, ring, teams=1, lost_data_keys=2)
    warnings = await check_database(settings, apply_migrations=False)
    assert warnings == ["team 'team-0': 2 configurations under a team data key that no longer exists (damaged "
                        "database: restore team_keys from a backup or enter those keys again)"]
    gateway = await asyncio.to_thread(Gateway, tmp_path, LLM_GATEWAY_DATABASE_URL=settings.database_url,
                                      LLM_GATEWAY_ENCRYPTION_KEYS=key_ring,
                                      LLM_GATEWAY_DATA_DIR=str(tmp_path / "data"))
    out, err = await asyncio.to_thread(gateway.stop)
    key_watch.output("the gateway's output", gateway.banner + out + err)
    assert f"llm-gateway: warning: {warnings[0]}" in err


def test_keys_rotate_fails_when_a_team_data_key_cannot_be_rewrapped(settings: Settings, tmp_path: Path) -> None:
    old, new = generate_key_entry("old"), generate_key_entry("new")
    asyncio.run(_seed(settings.database_url, KeyRing.from_entries(parse_key_ring(old)), personal=False))
    # The operator dropped `old` from the ring before rotating: the team's data key can no longer be opened.
    done = cli("keys", "rotate", cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=settings.database_url,
               LLM_GATEWAY_ENCRYPTION_KEYS=new)
    report = RotationReport.model_validate_json(done.stdout)
    assert (report.team_keys_rewrapped, len(report.team_keys_failed), report.remaining) == (0, 1, 1)
    assert report.team_keys_failed[0].startswith("tk")
    assert done.returncode == 1  # it was 0: the CLI said success with the team's key left under a missing key


async def test_encryption_status_names_teams_whose_data_key_is_gone(client: TestClient, settings: Settings,
                                                                    admin_headers: dict[str, str]) -> None:
    ring = KeyRing.from_entries(settings.key_ring_entries())
    await _seed(settings.database_url, ring, teams=2, lost_data_keys=3)
    status = await (await client.get("/api/admin/encryption/status", headers=admin_headers)).json()
    assert status["teams_missing_data_keys"] == {"team-1": 3}
    # The ring ids: one personal configuration and two team data keys under the primary, nothing missing.
    assert status["key_ids"] == [{"key_id": ring.primary_id, "rows": 1, "team_keys": 2, "in_ring": True,
                                  "primary": True}]
    assert status["all_in_ring"] is True and status["needs_rotation"] == 0
