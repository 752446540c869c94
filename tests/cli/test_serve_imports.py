"""What `serve` imports before it serves, in a fresh interpreter: each module held costs the process memory for
as long as it runs, so a module only a rare path needs is imported by that path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
import gateway.app, gateway.cli.main, gateway.cli.serve
# multiprocessing: only `serve --workers N` (N > 1) forks.
held = sorted(name for name in ("multiprocessing",) if name in sys.modules)
assert not held, f"imported by the serve path: {held}"
print("ok")
"""


def test_the_serve_path_leaves_the_workers_modules_to_serve_with_workers() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
