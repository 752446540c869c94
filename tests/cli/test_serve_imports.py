"""What `serve` imports before it serves, in a fresh interpreter: each module held costs the process memory for
as long as it runs, so a module only a rare path needs is imported by that path."""

from __future__ import annotations

from tests.fresh import run_fresh

SCRIPT = """
import sys
import gateway.app, gateway.cli.main, gateway.cli.serve
# multiprocessing: only `serve --workers N` (N > 1) forks. SQLAlchemy's PostgreSQL dialect: only a PostgreSQL
# database needs it (the models name no PostgreSQL-only option, which SQLAlchemy would load it to check).
held = sorted(name for name in ("multiprocessing", "sqlalchemy.dialects.postgresql") if name in sys.modules)
assert not held, f"imported by the serve path: {held}"
print("ok")
"""


def test_the_serve_path_leaves_workers_and_postgresql_modules_to_the_paths_that_need_them() -> None:
    assert run_fresh(SCRIPT, timeout=120, warnings_as_errors=False).strip() == "ok"
