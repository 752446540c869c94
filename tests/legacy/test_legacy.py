"""Legacy settings migration on SQLite and PostgreSQL: real keys imported and encrypted, masked, empty and
missing keys reported for re-entry and never imported, idempotent runs, one default, dry runs that write
nothing, the same from files, from the CLI and from the admin API."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from gateway.configurations.crud import decrypt_key
from gateway.legacy.migration import MigrationReport, run_migration, source_ref
from gateway.legacy.source import FileSource, classify, join_model, open_source, split_model
from gateway.store.models import AuditEvent, LLMConfiguration, User
from gateway.web.appkeys import KEYRING, POLICY, SESSIONMAKER
from gateway.web.legacy import app_migrator
from tests.conftest import ADMIN_TOKEN
from tests.factories import make_configuration, make_user
from tests.legacy_fixtures import (
    LEGACY_ROWS,
    NEEDS_REENTRY,
    REAL_KEYS,
    LegacyTable,
    legacy_table,  # noqa: F401 (fixture)
    write_legacy_files,
)


@pytest.mark.parametrize(
    ("settings", "kind", "reason"),
    [
        ({"llm_model": "gpt-4o", "llm_api_key": "sk-real-123456789"}, "real", None),
        ({"llm_model": "gpt-4o", "llm_api_key": "**********"}, "needs_reentry", "masked"),
        ({"llm_model": "gpt-4o", "llm_api_key": "***"}, "needs_reentry", "masked"),
        ({"llm_model": "gpt-4o", "llm_api_key": "<hidden>"}, "needs_reentry", "masked"),
        ({"llm_model": "gpt-4o", "llm_api_key": ""}, "needs_reentry", "empty"),
        ({"llm_model": "gpt-4o", "llm_api_key": " \t"}, "needs_reentry", "empty"),
        ({"llm_model": "gpt-4o", "llm_api_key": None}, "needs_reentry", "null"),
        ({"llm_model": "gpt-4o", "llm_api_key": 42}, "needs_reentry", "not_a_string"),
        ({"llm_model": "gpt-4o"}, "needs_reentry", "missing"),
        ({"llm_api_key": "sk-real-123456789"}, "skipped", "no llm_model"),
        ({}, "skipped", "no llm settings"),
    ],
)
def test_classify(settings: dict[str, object], kind: str, reason: str | None) -> None:
    verdict = classify(settings)
    assert (verdict.kind, verdict.reason) == (kind, reason)
    assert "sk-real" not in repr(verdict)


def test_model_prefix_names_the_provider(client: TestClient) -> None:
    catalog = client.server.app[POLICY].catalog
    assert split_model(catalog, "anthropic/claude-3-5-sonnet-20241022") == ("anthropic", "claude-3-5-sonnet-20241022")
    assert split_model(catalog, "gpt-4o") == ("openai", "gpt-4o")
    assert split_model(catalog, "openrouter/anthropic/claude-3.5") == ("openrouter", "anthropic/claude-3.5")
    assert join_model(catalog, "anthropic", "claude-3-5-sonnet-20241022") == "anthropic/claude-3-5-sonnet-20241022"
    assert join_model(catalog, "openai", "gpt-4o") == "gpt-4o"
    assert join_model(catalog, "openrouter", "anthropic/claude-3.5-sonnet") == "openrouter/anthropic/claude-3.5-sonnet"


async def _state(client: TestClient) -> dict[str, list[tuple[str, str, str, bool, str | None]]]:
    """Every user's configurations as (name, provider, model, is_default, source_ref)."""
    async with client.server.app[SESSIONMAKER]() as session:
        rows = (await session.execute(
            select(User.name, LLMConfiguration.name, LLMConfiguration.provider, LLMConfiguration.model,
                   LLMConfiguration.is_default, LLMConfiguration.source_ref)
            .join(User, User.id == LLMConfiguration.user_id).order_by(User.name, LLMConfiguration.name)
        )).all()
    state: dict[str, list[tuple[str, str, str, bool, str | None]]] = {}
    for user, *config in rows:
        state.setdefault(user, []).append(tuple(config))  # type: ignore[arg-type]
    return state


async def _counts(client: TestClient) -> tuple[int, int, int]:
    async with client.server.app[SESSIONMAKER]() as session:
        return tuple([  # type: ignore[return-value]
            (await session.execute(select(func.count()).select_from(model))).scalar_one()
            for model in (User, LLMConfiguration, AuditEvent)
        ])


def _assert_first_run(report: MigrationReport) -> None:
    assert report.scanned == len(LEGACY_ROWS)
    assert report.migrated == 2 and report.already_migrated == 0
    assert {(n.user, n.reason) for n in report.needs_reentry} == set(NEEDS_REENTRY.items())
    assert [(n.user, n.reason) for n in report.skipped] == [("judy", "no llm settings")]
    assert [n.user for n in report.errors] == ["hank"]
    dumped = report.model_dump_json()
    assert all(key.strip() not in dumped for key in REAL_KEYS.values())


async def test_legacy_table_migrates_exactly_once(client: TestClient, legacy_table: LegacyTable) -> None:  # noqa: F811
    app = client.server.app
    gina = await make_user(client, "gina")
    gina_own = await make_configuration(client, gina, name="mine")  # gina already has a default
    source = open_source(db_url=legacy_table.url, table_name=legacy_table.table)
    try:
        before = await _counts(client)
        dry = await run_migration(app_migrator(app), source, dry_run=True)
        _assert_first_run(dry)
        assert dry.dry_run and dry.users_created == 1
        assert await _counts(client) == before

        first = await run_migration(app_migrator(app), source)
        _assert_first_run(first)
        assert first.users_created == 1
        state = await _state(client)
        second = await run_migration(app_migrator(app), source)
    finally:
        await source.close()

    assert second.migrated == 0 and second.already_migrated == 2 and second.users_created == 0
    assert second.needs_reentry == first.needs_reentry and second.errors == first.errors
    assert await _state(client) == state
    assert state == {
        "alice": [("Migrated Configuration", "anthropic", "claude-3-5-sonnet-20241022", True, source_ref("alice"))],
        "gina": [("Migrated Configuration", "openai", "gpt-4o", False, source_ref("gina")),
                 ("mine", "openai", gina_own["model"], True, None)],
    }
    async with app[SESSIONMAKER]() as session:
        query = select(LLMConfiguration).where(LLMConfiguration.source_ref.is_not(None))
        rows = list((await session.execute(query)).scalars())
        for row in rows:
            user = await session.get(User, row.user_id)
            assert user is not None
            assert decrypt_key(app[KEYRING], row) == REAL_KEYS[user.name]
            assert REAL_KEYS[user.name] not in row.api_key_encrypted and row.key_id == app[KEYRING].primary_id
            assert row.base_url is None


async def test_a_deleted_migrated_configuration_is_not_recreated(client: TestClient, tmp_path: Path) -> None:
    app = client.server.app
    source = FileSource(write_legacy_files(tmp_path / "legacy", {"alice": LEGACY_ROWS["alice"]}))
    assert (await run_migration(app_migrator(app), source)).migrated == 1
    resp = await client.get("/api/settings", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert resp.status == 403  # the operator token owns no settings
    async with app[SESSIONMAKER]() as session:
        row = (await session.execute(select(LLMConfiguration))).scalar_one()
        await session.delete(row)
        await session.commit()
    again = await run_migration(app_migrator(app), source)
    assert again.migrated == 0 and again.already_migrated == 1
    assert (await _counts(client))[1] == 0


async def test_control_characters_are_refused_like_on_every_write_path(client: TestClient, tmp_path: Path) -> None:
    rows = {"mallory": {"llm_model": "gpt-4o\x1b[2J", "llm_api_key": "sk-mallory-000000000000000001"},
            "trent": {"llm_model": "openai/gpt\u00850", "llm_api_key": "sk-trent-0000000000000000001"},
            "oscar": {"llm_model": "gpt-4o", "llm_api_key": "sk-oscar-0000000000000000001",
                      "llm_base_url": "https://llm.example.com/v1\x00"}}
    source = FileSource(write_legacy_files(tmp_path / "legacy", rows))
    before = await _counts(client)
    for dry_run in (True, False):
        report = await run_migration(app_migrator(client.server.app), source, dry_run=dry_run)
        assert report.migrated == 0 and sorted(note.user for note in report.errors) == sorted(rows), report
    assert await _counts(client) == before  # no user, configuration or audit row


async def test_folder_of_settings_files(client: TestClient, tmp_path: Path) -> None:
    directory = write_legacy_files(tmp_path / "legacy", LEGACY_ROWS)
    (directory / "notes.txt").write_text("ignored")
    report = await run_migration(app_migrator(client.server.app), FileSource(directory))
    _assert_first_run(report)
    assert set(await _state(client)) == {"alice", "gina"}


def test_cli_migrate_legacy_dry_run_then_real(tmp_path: Path) -> None:
    # The CLI runs the code tested on both databases above; here once, on the embedded default, with models
    # whose prefix names the provider (litellm takes many seconds to import in each subprocess).
    rows = {user: LEGACY_ROWS[user] for user in ("alice", "bob", "dave", "hank")}
    directory = write_legacy_files(tmp_path / "legacy", rows)
    env = {"LLM_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
           "LLM_GATEWAY_DATA_DIR": str(tmp_path / "data")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        import os

        full_env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_GATEWAY_")} | env
        return subprocess.run([sys.executable, "-m", "gateway", *args], env=full_env, capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)

    assert cli("db", "upgrade").returncode == 0
    dry = cli("migrate-legacy", "--from-files", str(directory), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert MigrationReport.model_validate_json(dry.stdout).migrated == 1
    real = cli("migrate-legacy", "--from-files", str(directory))
    again = cli("migrate-legacy", "--from-files", str(directory))
    report = MigrationReport.model_validate_json(real.stdout)
    assert (report.migrated, len(report.needs_reentry), len(report.errors)) == (1, 2, 1)
    assert MigrationReport.model_validate_json(again.stdout).already_migrated == 1
    assert all(key.strip() not in real.stdout + real.stderr for key in REAL_KEYS.values())
    missing = cli("migrate-legacy", "--from-files", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


async def test_admin_endpoint(client: TestClient, admin_headers: dict[str, str],
                              legacy_table: LegacyTable) -> None:  # noqa: F811
    path = "/api/admin/migrations/legacy-settings"
    body = {"from_db": legacy_table.url, "table": legacy_table.table}
    user = await make_user(client)
    assert (await client.post(path, json=body, headers=user.headers)).status == 403
    resp = await client.post(path, json={**body, "dry_run": True}, headers=admin_headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["migrated"] == 2 and (await _counts(client))[1] == 0
    resp = await client.post(path, json=body, headers=admin_headers)
    report = await resp.json()
    assert report["migrated"] == 2 and len(report["needs_reentry"]) == len(NEEDS_REENTRY)
    raw = await resp.text()
    assert all(key.strip() not in raw for key in REAL_KEYS.values())
    resp = await client.post(path, json={**body, "table": "nope; drop table users"}, headers=admin_headers)
    assert resp.status == 422 and (await resp.json())["error"]["param"] == "table"
    resp = await client.post(path, json={**body, "table": "no_such_table"}, headers=admin_headers)
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "from_db"
    resp = await client.post(path, json={}, headers=admin_headers)
    assert resp.status == 422 and (await resp.json())["error"]["param"] == "from_db"


async def test_status_and_read_through(  # type: ignore[no-untyped-def]
    aiohttp_client, settings, tmp_path: Path
) -> None:
    from gateway.app import create_app

    directory = write_legacy_files(tmp_path / "legacy", LEGACY_ROWS)
    client = await aiohttp_client(create_app(settings.model_copy(update={"legacy_source_dir": directory})))
    alice, bob, zed = [await make_user(client, n) for n in ("alice", "bob", "zed")]
    # alice's very first request is served from her migrated configuration
    resp = await client.get("/api/settings", headers=alice.headers)
    assert await resp.json() == {"llm_model": "anthropic/claude-3-5-sonnet-20241022", "llm_base_url": None,
                                 "llm_api_key": None, "llm_api_key_set": True}
    status = await (await client.get("/api/migrations/status", headers=alice.headers)).json()
    assert status["state"] == "migrated" and status["migrated"] and uuid.UUID(status["configuration_id"])
    status = await (await client.get("/api/migrations/status", headers=bob.headers)).json()
    assert status == {"legacy_source_configured": True, "found": True, "migrated": False, "needs_reentry": True,
                      "state": "needs_reentry", "reason": "masked", "configuration_id": None}
    # bob re-enters his key through the old settings endpoint: no longer waiting for one
    resp = await client.post("/api/settings", json={"llm_model": "gpt-4o", "llm_api_key": "sk-bob-new-key-12345"},
                             headers=bob.headers)
    assert resp.status == 200 and (await resp.json())["llm_api_key_set"] is True
    status = await (await client.get("/api/migrations/status", headers=bob.headers)).json()
    assert status["needs_reentry"] is False
    status = await (await client.get("/api/migrations/status", headers=zed.headers)).json()
    assert status["found"] is False and status["state"] == "not_found"
