"""The package installs: a wheel built from this tree, installed into a fresh virtualenv (dependencies from the
index, pinned by constraints.txt), serves from an empty folder - migrations, the web page and the provider
catalog travel inside it. Takes a minute or two: it really builds and installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.cli.test_cli import _env, free_port, wait_healthy

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 900


def run(*args: str | Path, cwd: Path) -> None:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def build_wheel(tmp_path: Path) -> Path:
    """Build from a copy, so the checkout gets no build/ or egg-info of its own."""
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", source, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("llm_gateway-*.whl")
    return wheel


def get(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.status, resp.read().decode()


def test_wheel_installs_into_a_fresh_venv_and_serves_from_an_empty_folder(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "-c", REPO / "constraints.txt", wheel, cwd=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    port = free_port()
    proc = subprocess.Popen([str(venv / "bin" / "llm-gateway"), "serve", "--port", str(port)], cwd=empty,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, proc, timeout=60)
        assert get(port, "/readyz")[0] == 200
        status, page = get(port, "/ui/")
        assert status == 200 and "<html" in page.lower()
        assert get(port, "/ui/assets/js/app.js")[0] == 200
        # The embedded SQLite database was created and migrated here, not in the source tree.
        assert list(empty.rglob("*.db"))
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
