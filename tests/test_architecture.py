"""The import contract in pyproject.toml ([tool.importlinter]) holds, and would catch storage importing aiohttp."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def lint_imports(src: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the packages under `src`, with the configuration found in `cwd`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_import_contract_is_kept() -> None:
    result = lint_imports(ROOT / "src", ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_import_contract_fails_when_storage_imports_aiohttp(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "static", "docs"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    db = src / "gateway" / "store" / "db.py"
    db.write_text(db.read_text() + "\nimport aiohttp  # noqa: E402, F401\n")
    result = lint_imports(src, tmp_path)
    assert result.returncode != 0
    assert "gateway.store.db -> aiohttp" in result.stdout


def test_import_contract_fails_when_forward_imports_translation(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "static", "docs"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    forward = src / "gateway" / "proxy" / "forward.py"
    late = "\n\ndef _late() -> None:\n    from gateway.proxy import translation  # noqa: F401\n"
    forward.write_text(forward.read_text() + late)
    result = lint_imports(src, tmp_path)
    assert result.returncode != 0
    assert "gateway.proxy.forward -> gateway.proxy.translation" in result.stdout
