"""Run a script in a fresh interpreter (what a test asserts about imports cannot be seen in this process, where
other tests import litellm, multiprocessing… on purpose), with this checkout's src and tests on its path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_fresh(script: str, *args: str, timeout: float, warnings_as_errors: bool = True) -> str:
    """The script's stdout; the test fails with the end of its stderr unless it exits with 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    flags = ["-W", "error"] if warnings_as_errors else []
    result = subprocess.run([sys.executable, *flags, "-c", script, *args], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
