"""ruff and mypy --strict pass on the tree with the configuration in pyproject.toml, and each catches a planted fault."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(tool: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_ruff_passes() -> None:
    result = run("ruff", "check", "--no-cache", "src", "tests", "benchmarks", "docs/hooks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_passes() -> None:
    result = run("mypy", "--no-incremental", "--cache-dir=/dev/null")
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_catch_a_planted_fault(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    planted = tmp_path / "src" / "gateway" / "store" / "db.py"
    planted.write_text(planted.read_text() + "\n\ndef planted(value):\n    import os\n    return value + 1\n")
    ruff = run("ruff", "check", "--no-cache", "src", cwd=tmp_path)
    assert ruff.returncode != 0 and "F401" in ruff.stdout and "db.py" in ruff.stdout
    mypy = run("mypy", "--no-incremental", "--cache-dir=/dev/null", cwd=tmp_path)
    assert mypy.returncode != 0 and 'Function is missing a type annotation' in mypy.stdout
