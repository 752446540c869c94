"""What CI can check of the deployment files without a container engine: the wheel the Dockerfile installs
carries every file the gateway reads from its packages, the Dockerfile copies files that exist, runs as a
non-root user with a data volume and a /readyz health check, the compose file is valid and wires PostgreSQL,
and the systemd unit runs `llm-gateway serve`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_copies_files_that_exist_and_runs_unprivileged() -> None:
    instructions = _instructions()
    for kind, args in instructions:
        if kind == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (REPO / source).exists(), source
    final = instructions[max(i for i, (kind, _) in enumerate(instructions) if kind == "FROM"):]
    users = [args for kind, args in final if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(kind == "VOLUME" and "/data" in args for kind, args in final)
    assert any(kind == "ENV" and "LLM_GATEWAY_DATA_DIR=/data" in args for kind, args in final)
    assert any(kind == "HEALTHCHECK" and "/readyz" in args for kind, args in final)
    assert any(kind == "RUN" and "pip install" in args and "llm-gateway" in args for kind, args in final)
    assert [args for kind, args in final if kind == "CMD"][-1] == '["llm-gateway", "serve"]'


def test_the_wheel_carries_every_package_file(tmp_path: Path) -> None:
    # The Dockerfile's build stage: its COPY lines make the context, then `pip wheel .` (here without the
    # dependencies, which the wheel does not carry anyway).
    context, wheels = tmp_path / "src", tmp_path / "wheels"
    context.mkdir()
    for kind, args in _instructions():
        if kind == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, context / source,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
                else:
                    shutil.copy(REPO / source, context / source)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", str(wheels), "."],
                           cwd=context, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("llm_gateway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    src = REPO / "src"
    shipped = {str(path.relative_to(src)) for path in src.rglob("*")
               if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path)}
    assert shipped - names == set()
    assert {"admin/docs/swagger-ui-bundle.js", "admin/static/index.html", "gateway/data/providers.toml"} <= names


def test_compose_file_wires_the_gateway_to_postgres() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "gateway"}
    gateway = services["gateway"]
    assert gateway["build"] == "." and gateway["depends_on"]["db"]["condition"] == "service_healthy"
    env = gateway["environment"]
    assert env["LLM_GATEWAY_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@db:5432/" in env["LLM_GATEWAY_DATABASE_URL"]
    assert "LLM_GATEWAY_ENCRYPTION_KEYS" in env
    assert services["db"]["healthcheck"]["test"]
    for service in services.values():
        for volume in service.get("volumes", []):
            assert volume.split(":", 1)[0] in compose["volumes"]


def test_systemd_unit_runs_serve_unprivileged() -> None:
    unit = (REPO / "deploy" / "llm-gateway.service").read_text()
    sections = re.findall(r"^\[(\w+)\]$", unit, re.M)
    assert sections == ["Unit", "Service", "Install"]
    values = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert values["ExecStart"].endswith("llm-gateway serve")
    assert values["User"] not in ("root", "0")
    # The example environment file it names is shipped beside it.
    assert values["EnvironmentFile"] == "/etc/llm-gateway.env" and (REPO / "deploy" / "llm-gateway.env").exists()


def test_license_matches_the_project_metadata() -> None:
    assert "Apache License" in (REPO / "LICENSE").read_text()
    assert 'license = { text = "Apache-2.0" }' in (REPO / "pyproject.toml").read_text()
    assert (REPO / "CHANGELOG.md").read_text().startswith("# Changelog")
