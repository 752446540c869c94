"""The parts of the suite that need something a machine may lack: PostgreSQL, Chromium, node. One rule for all:
a part that cannot run is a skip with one line saying what is missing and how to get it, and a failure under
CI=true (where a skip would count as a pass). At the end of a run, one line per part says whether it ran.

`python -m tests.parts` prints the PostgreSQL URL `make test` should use: LLM_GATEWAY_TEST_DATABASE_URL when set,
else the documented default when a server answers there, else nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import NoReturn

import pytest

PART_NAMES = ("SQLite", "PostgreSQL", "browser", "Node client")
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
POSTGRES_MISSING = ("LLM_GATEWAY_TEST_DATABASE_URL is not set (`make test` sets it when PostgreSQL answers at "
                    "127.0.0.1:5432; to install one: `apt-get install postgresql`)")


def under_ci() -> bool:
    """CI=true: a part that cannot run fails the run instead of skipping."""
    return os.environ.get("CI", "").lower() == "true"


def missing(part: str, reason: str) -> NoReturn:
    """This test's part cannot run here: skip with one line naming the part and the fix; fail under CI."""
    message = f"{part} not run: {reason}"
    if under_ci():
        pytest.fail(f"{message} (CI=true: a part that cannot run fails)", pytrace=False)
    pytest.skip(message)


def parts_of(item: pytest.Item) -> list[str]:
    """Which parts a test belongs to: its database backend, Chromium, node."""
    params = getattr(item, "callspec", None)
    backend = params.params.get("database_url", params.params.get("postgres_url")) if params else None
    found = {"sqlite": ["SQLite"], "postgres": ["PostgreSQL"]}.get(str(backend), [])
    names = set(getattr(item, "fixturenames", ()))
    if "browser" in names or item.path.name.endswith("_browser.py"):
        found.append("browser")
    if "node_project" in names:
        found.append("Node client")
    return found


class Tally:
    """Per part: how many of its tests ran (passed or failed) and why the others were skipped."""

    def __init__(self) -> None:
        self.ran: Counter[str] = Counter()
        self.skipped: dict[str, Counter[str]] = {part: Counter() for part in PART_NAMES}

    def record(self, parts: list[str], report: pytest.TestReport) -> None:
        """One phase's report of a test of these parts."""
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            for part in parts:
                self.skipped[part][reason.removeprefix("Skipped: ")] += 1
        elif report.when == "call":
            for part in parts:
                self.ran[part] += 1

    def lines(self) -> list[str]:
        """One line per part: ran, not run and why, or not in this selection."""
        out = []
        for part in PART_NAMES:
            ran, skipped = self.ran[part], self.skipped[part]
            if not skipped:
                out.append(f"{part}: ran {ran} tests" if ran else f"{part}: not in this selection")
                continue
            reason = skipped.most_common(1)[0][0].removeprefix(f"{part} not run: ")
            done = f"ran {ran} tests, skipped {skipped.total()}" if ran else f"NOT RUN ({skipped.total()} skipped)"
            out.append(f"{part}: {done}: {reason}")
        return out


async def _answers(url: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=2)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def postgres_for_make_test() -> str:
    """The URL `make test` runs PostgreSQL on ('' when there is none)."""
    configured = os.environ.get("LLM_GATEWAY_TEST_DATABASE_URL", "")
    if configured:
        return configured
    return DEFAULT_POSTGRES_URL if asyncio.run(_answers(DEFAULT_POSTGRES_URL)) else ""


if __name__ == "__main__":
    print(postgres_for_make_test())
