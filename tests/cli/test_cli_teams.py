"""`llm-gateway teams ...` as an operator's onboarding script meets it, on both databases: teams and members by
name, one-line refusals (unknown team or user, the last owner, duplicates), and every write announced to running
gateways (NOTIFY on PostgreSQL, change_log rows on SQLite) like the API's."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from gateway.store.changes import CHANNEL, Change
from gateway.store.db import make_engine, make_sessionmaker
from gateway.store.models import ChangeLog, TeamKey, TeamMember, User
from tests.cli.test_cli import _env, cli

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(tmp_path: Path, database_url: str, key_ring: str) -> Run:
    """`llm-gateway ARGS...` on the test's database, with the test's key ring."""
    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(*args, cwd=tmp_path, LLM_GATEWAY_DATABASE_URL=database_url, LLM_GATEWAY_ENCRYPTION_KEYS=key_ring)

    return command


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit status 2 and one line on stderr holding `words`, never a traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert all(word in lines[0] for word in words), lines[0]


async def _rows(url: str) -> tuple[dict[str, str], int, list[tuple[str, str | None]]]:
    """(member name → role of the one team, its stored data keys, change_log (kind, user id) rows)."""
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        members = dict((await session.execute(
            select(User.name, TeamMember.role).join(User, User.id == TeamMember.user_id))).all())
        keys = len((await session.execute(select(TeamKey.id))).all())
        changes = [(kind, user_id) for kind, user_id in (await session.execute(
            select(ChangeLog.kind, ChangeLog.user_id))).all()]
    await engine.dispose()
    return members, keys, changes


def test_teams_onboarding_from_the_cli(run: Run, database_url: str) -> None:
    for name in ("alice", "bob"):
        assert run("users", "create", name).returncode == 0
    assert run("teams", "list").stdout.strip() == "no teams"

    created = run("teams", "create", "research", "--owner", "alice")
    assert created.returncode == 0 and "created team research" in created.stdout, created.stderr
    refused(run("teams", "create", "research", "--owner", "bob"), "already exists")
    refused(run("teams", "create", "other", "--owner", "nobody"),
            "no user named 'nobody'")
    refused(run("teams", "create", "a/b", "--owner", "bob"), "'/'")

    added = run("teams", "add-member", "research", "bob")
    assert added.returncode == 0 and added.stdout.strip() == "added bob to research as member", added.stderr
    refused(run("teams", "add-member", "research", "bob"), "already a member")
    refused(run("teams", "add-member", "nope", "bob"), "no team named 'nope'")
    refused(run("teams", "add-member", "research", "ghost"),
            "no user named 'ghost'")
    refused(run("teams", "remove-member", "research", "alice"), "last owner")

    listed = run("teams", "list").stdout.strip().splitlines()
    assert len(listed) == 1 and listed[0].endswith("  research  2 members  owners: alice"), listed
    uuid.UUID(listed[0].split()[0])
    members, keys, _ = asyncio.run(_rows(database_url))
    assert members == {"alice": "owner", "bob": "member"} and keys == 1

    removed = run("teams", "remove-member", "research", "bob")
    assert removed.returncode == 0 and removed.stdout.strip() == "removed bob from research", removed.stderr
    refused(run("teams", "remove-member", "research", "bob"),
            "'bob' is not a member of team 'research'")
    members, _, _ = asyncio.run(_rows(database_url))
    assert members == {"alice": "owner"}


def test_a_second_owner_may_be_added_and_then_the_first_removed(run: Run, database_url: str) -> None:
    for name in ("olga", "pete"):
        assert run("users", "create", name).returncode == 0
    assert run("teams", "create", "ops", "--owner", "olga").returncode == 0
    assert run("teams", "add-member", "ops", "pete", "--role", "owner").returncode == 0
    assert run("teams", "remove-member", "ops", "olga").returncode == 0
    refused(run("teams", "remove-member", "ops", "pete"), "last owner")
    members, _, _ = asyncio.run(_rows(database_url))
    assert members == {"pete": "owner"}


async def _notifications_of(url: str, argv: list[str]) -> list[str]:
    """Run the CLI while LISTENing on the gateway's channel; the payloads that arrived."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    payloads: list[str] = []
    await connection.add_listener(CHANNEL, lambda *args: payloads.append(args[-1]))
    try:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *argv, env=_env(
            LLM_GATEWAY_DATABASE_URL=url), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        for _ in range(100):
            if payloads:
                break
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
    return payloads


def test_removing_a_member_is_announced_to_running_gateways(run: Run, database_url: str) -> None:
    for name in ("rita", "sam"):
        assert run("users", "create", name).returncode == 0
    assert run("teams", "create", "lab", "--owner", "rita").returncode == 0
    assert run("teams", "add-member", "lab", "sam").returncode == 0
    sam = asyncio.run(_user_id(database_url, "sam"))
    argv = ["teams", "remove-member", "lab", "sam"]
    if database_url.startswith("postgresql"):
        changes = [Change.decode(p)[0] for p in asyncio.run(_notifications_of(database_url, argv))]
    else:
        assert run(*argv).returncode == 0
        changes = [Change(kind, user_id) for kind, user_id in asyncio.run(_rows(database_url))[2]]
    assert Change("teams", sam) in changes, changes


async def _user_id(url: str, name: str) -> str:
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        user_id = (await session.execute(select(User.id).where(User.name == name))).scalar_one()
    await engine.dispose()
    return str(user_id)
