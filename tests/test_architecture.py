"""The import contract in pyproject.toml ([tool.importlinter]) holds, and would catch storage importing aiohttp or
configurations importing legacy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    ("module", "line", "reported"),
    [
        ("gateway/store/db.py", "import aiohttp", "gateway.store.db -> aiohttp"),
        # configurations and legacy once imported each other: the layers contract keeps it one way.
        ("gateway/configurations/backup.py", "import gateway.legacy.compat",
         "gateway.configurations.backup -> gateway.legacy.compat"),
        # forward and translation once imported each other: the proxy's layers contract keeps it one way.
        ("gateway/proxy/forward.py", "import gateway.proxy.translation",
         "gateway.proxy.forward -> gateway.proxy.translation"),
        # litellm lives in the translation worker's process: the gateway's side never imports the worker.
        ("gateway/proxy/dispatch.py", "import gateway.proxy.translation.worker",
         "gateway.proxy.dispatch -> gateway.proxy.translation.worker"),
        ("gateway/proxy/translation/client.py", "import litellm", "gateway.proxy.translation.client -> litellm"),
    ],
)
def test_import_contract_fails_when_broken(tmp_path: Path, module: str, line: str, reported: str) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "static", "docs"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = src / module
    path.write_text(path.read_text() + f"\n{line}  # noqa: E402, F401\n")
    result = lint_imports(src, tmp_path)
    assert result.returncode != 0
    assert reported in result.stdout
