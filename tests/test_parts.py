"""The suite does not hide what it did not run: without PostgreSQL its cases are collected and skip with one line
saying how to get it (under CI=true the run stops at once), a missing Chromium or node follows the same rule, the
run ends with one line per part, and a leak-watch row scan that cannot read its database fails the test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.crypto.keyring import KeyRing, generate_key_entry
from gateway.settings import parse_key_ring
from tests import parts
from tests.leakwatch import KeyRegistry, LeakWatch
from tests.reliability.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
# A quick test on the `database_url` fixture (both backends).
ONE_TEST = "tests/crypto/test_key_inventory.py::test_team_rows_do_not_stop_a_restart"


def _pytest(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "LLM_GATEWAY_TEST_DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          env={**clean, **env}, capture_output=True, text=True, timeout=300)


def test_without_postgres_its_cases_skip_saying_why_and_the_run_says_what_ran() -> None:
    run = _pytest("-rs", ONE_TEST)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    # Before: the [postgres] case was not collected at all ("1 passed"), and nothing said so.
    assert "1 passed, 1 skipped" in out, out[-2000:]
    assert "PostgreSQL not run: LLM_GATEWAY_TEST_DATABASE_URL is not set" in out
    assert "apt-get install postgresql" in out
    assert "SQLite: ran 1 tests" in out and "PostgreSQL: NOT RUN (1 skipped)" in out, out[-2000:]
    assert "browser: not in this selection" in out and "Node client: not in this selection" in out


def test_under_ci_a_missing_postgres_stops_the_run() -> None:
    run = _pytest(ONE_TEST, CI="true")
    assert run.returncode != 0, run.stdout[-3000:]
    assert "CI=true, but the PostgreSQL half of the suite cannot run" in run.stdout + run.stderr
    assert "passed" not in run.stdout


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_missing_part_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match=r"Node client not run: node .* `apt-get install nodejs npm`"):
        parts.missing("Node client", "node or npm not found: install them with `apt-get install nodejs npm`")


def test_a_row_scan_that_cannot_read_its_database_is_a_finding(tmp_path: Path) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a SQLite database" * 100)
    watch = LeakWatch(KeyRegistry({}))
    watch.databases[f"sqlite+aiosqlite:///{broken}"] = KeyRing.from_entries(parse_key_ring(generate_key_entry("k")))
    watch.scan_databases()
    # Before: the error became a "skipped" note that no check looked at, and the test passed.
    [finding] = watch.findings()
    assert finding.where == f"the row scan of sqlite+aiosqlite:///{broken}"
    assert "not checked for keys" in finding.what and "DatabaseError" in finding.context


def test_make_test_uses_the_variable_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_GATEWAY_TEST_DATABASE_URL", "postgresql+asyncpg://elsewhere/db")
    assert parts.postgres_for_make_test() == "postgresql+asyncpg://elsewhere/db"


def test_make_test_finds_no_postgres_where_none_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_GATEWAY_TEST_DATABASE_URL", raising=False)
    monkeypatch.setattr(parts, "DEFAULT_POSTGRES_URL", f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
    assert parts.postgres_for_make_test() == ""


def test_make_test_uses_a_postgres_that_answers_at_the_default(monkeypatch: pytest.MonkeyPatch,
                                                                postgres_url: str) -> None:
    monkeypatch.delenv("LLM_GATEWAY_TEST_DATABASE_URL", raising=False)
    monkeypatch.setattr(parts, "DEFAULT_POSTGRES_URL", postgres_url)
    assert parts.postgres_for_make_test() == postgres_url
