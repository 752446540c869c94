"""What CI can check of the deployment files without a container engine: the wheel the Dockerfile installs
carries every file the gateway reads from its packages, the Dockerfile copies files that exist, runs as a
non-root user with a data volume and a /readyz health check, the compose file is valid and wires PostgreSQL,
and the systemd unit runs `llm-gateway serve`."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

from gateway.settings import parse_key_ring
from gateway.store import migrate

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
                    (context / source).parent.mkdir(parents=True, exist_ok=True)
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


def _compose(name: str) -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((REPO / name).read_text())
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            assert volume.split(":", 1)[0] in compose["volumes"]
    return compose


def _key_out_of_the_data_volume(gateway: dict[str, Any]) -> None:
    """The key ring comes from a file in a volume of its own, not the data volume, and nothing must be set first."""
    env = gateway["environment"]
    mounts = dict(volume.split(":", 1)[::-1] for volume in gateway["volumes"])
    keys_file = Path(env["LLM_GATEWAY_ENCRYPTION_KEYS_FILE"])
    assert keys_file.parent.as_posix() in mounts and mounts[keys_file.parent.as_posix()] != mounts["/data"]
    assert "LLM_GATEWAY_ENCRYPTION_KEYS" not in env and "LLM_GATEWAY_MIGRATE_ON_START" not in env
    assert gateway["build"] == "." and "${" not in str(gateway).replace("${POSTGRES_PASSWORD:-", "")


def test_compose_file_wires_the_gateway_to_postgres() -> None:
    services = _compose("compose.yaml")["services"]
    assert set(services) == {"db", "gateway"}
    gateway = services["gateway"]
    assert gateway["depends_on"]["db"]["condition"] == "service_healthy"
    env = gateway["environment"]
    assert env["LLM_GATEWAY_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@db:5432/" in env["LLM_GATEWAY_DATABASE_URL"]
    # No manual step: a password that is only a default, for a database reachable only on the compose network.
    assert ":?" not in (REPO / "compose.yaml").read_text() and "ports" not in services["db"]
    assert services["db"]["healthcheck"]["test"]
    _key_out_of_the_data_volume(gateway)


def test_compose_file_for_sqlite_needs_nothing_but_up() -> None:
    services = _compose("compose.sqlite.yaml")["services"]
    assert set(services) == {"gateway"}
    assert "LLM_GATEWAY_DATABASE_URL" not in services["gateway"]["environment"]  # gateway.db in /data
    _key_out_of_the_data_volume(services["gateway"])


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    ignore = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert ignore[0] == "*"  # everything out, then what the Dockerfile copies back in
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {source.rstrip("/").removeprefix("./") for kind, args in _instructions()
              if kind == "COPY" and not args.startswith("--from") for source in args.split()[:-1]}
    assert copied == allowed
    final = _instructions()[max(i for i, (kind, _) in enumerate(_instructions()) if kind == "FROM"):]
    assert ("ENTRYPOINT", '["docker-entrypoint.sh"]') in final


def entrypoint(*command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """deploy/docker-entrypoint.sh as the container runs it, with the venv's llm-gateway on PATH."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLM_GATEWAY_")}
    clean["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{clean['PATH']}"
    return subprocess.run(["sh", str(REPO / "deploy" / "docker-entrypoint.sh"), *command], cwd=cwd,
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)


def test_entrypoint_writes_the_key_apart_and_migrates_on_start(tmp_path: Path) -> None:
    data, keys = tmp_path / "data", tmp_path / "keys"
    data.mkdir()
    keys.mkdir()
    env = {"LLM_GATEWAY_DATA_DIR": str(data), "LLM_GATEWAY_ENCRYPTION_KEYS_FILE": str(keys / "encryption.key")}
    off = entrypoint("llm-gateway", "db", "current", cwd=tmp_path, LLM_GATEWAY_MIGRATE_ON_START="false", **env)
    assert off.returncode == 0 and off.stdout.strip() == "empty", off.stderr
    assert off.stderr.count("wrote a new encryption key") == 1
    started = entrypoint("llm-gateway", "db", "current", cwd=tmp_path, **env)
    assert started.returncode == 0 and started.stdout.strip() == migrate.head_revision(), started.stderr
    key_file = keys / "encryption.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and parse_key_ring(key_file.read_text().strip())
    assert sorted(p.name for p in data.iterdir()) == ["gateway.db"]  # no key beside the database
    assert "wrote a new" not in started.stderr
    # The next start reads the same key; a command that needs the ring gets it (users create on SQLite would
    # otherwise write data/encryption.key).
    again = entrypoint("llm-gateway", "users", "create", "erin", cwd=tmp_path, **env)
    assert again.returncode == 0 and "wrote a new" not in again.stderr and not (data / "encryption.key").exists()
    bad = entrypoint("true", cwd=tmp_path, LLM_GATEWAY_MIGRATE_ON_START="maybe", **env)
    assert bad.returncode == 2 and "LLM_GATEWAY_MIGRATE_ON_START" in bad.stderr


def test_entrypoint_migrates_postgres_on_start(tmp_path: Path, postgres_url: str, key_ring: str) -> None:
    migrate.downgrade(postgres_url, "base")
    try:
        env = {"LLM_GATEWAY_DATABASE_URL": postgres_url, "LLM_GATEWAY_ENCRYPTION_KEYS": key_ring}
        off = entrypoint("llm-gateway", "db", "current", cwd=tmp_path, LLM_GATEWAY_MIGRATE_ON_START="false", **env)
        assert off.returncode == 0 and off.stdout.strip() == "empty", off.stderr
        started = entrypoint("llm-gateway", "users", "create", "frank", cwd=tmp_path, **env)
        assert started.returncode == 0 and "lgw_" in started.stdout, started.stderr
    finally:
        migrate.upgrade(postgres_url)


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
