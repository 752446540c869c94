"""The walkthroughs, run as written: their code blocks are read from the README and the documentation pages and
executed against a real `serve` process and the bundled fake upstream (only ports and the values a person pastes
are filled in). The README's five-minute walkthrough runs first; the pages that go on from it (teams, testing,
templates, export, the openai SDK) run after it on the same gateway. Every other shell or Python block of the
README and docs/ is listed in NOT_RUN with the reason, so a new example cannot go untested unnoticed."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.live import REPO, Gateway, start_fake, stop_fake

README = (REPO / "README.md").read_text()
SECTION = README.split("## Five-minute walkthrough", 1)[1].split("\n## ", 1)[0]
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)
BLOCKS = FENCE.findall(SECTION)


def page_blocks(page: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block of a page under docs/."""
    return FENCE.findall((REPO / "docs" / page).read_text())


TEAMS_BLOCKS = page_blocks("concepts/teams.md")
# Blocks no test runs, by (file, first command line): each needs what the test machine lacks, or a test runs
# the same thing another way.
NOT_RUN = {
    ("README.md", "make run    # virtualenv + the runtime install, then the gateway on http://127.0.0.1:4000 (SQLite, a generated local key)"):
        "make itself: the walkthrough runs the same `llm-gateway serve` (tests/cli/test_cli.py: the embedded start)",
    ("README.md", "make docs   # the same virtualenv, then mkdocs build --strict into site/"):
        "tests/docs/test_site.py runs the same mkdocs build --strict",
    ("docs/benchmarks.md", "apt-get install -y wrk      # once: the load generator (Debian's wrk 4.1)"):
        "installs a package and runs minutes of load: tests/reliability and benchmarks' own tests cover the harness",
    ("docs/how-to/coming-from-litellm.md", "llm-gateway import litellm-config config.yaml --user alice --dry-run   # look first: nothing is written"):
        "needs a LiteLLM config.yaml: tests/cli/test_import_litellm.py runs the command, dry run and all",
    ("docs/how-to/migrating-legacy.md", "llm-gateway migrate-legacy --from-db postgresql://app@db/openhands --dry-run   # table user_settings(user_id, settings)"):
        "needs the old system's database or folder: tests/legacy/test_legacy.py runs migrate-legacy on both",
    ("docs/how-to/deployment.md", "docker build -t llm-gateway ."): "needs a container engine (tests/test_deployment.py)",
    ("docs/how-to/deployment.md", "docker compose -f compose.sqlite.yaml up -d         # SQLite in the volume gateway-data"):
        "needs a container engine (tests/test_deployment.py checks both compose files and runs the entrypoint)",
    ("docs/how-to/deployment.md", "python3 -m pip wheel --no-deps --wheel-dir dist .                 # in a checkout: the wheel"):
        "installs into /opt and systemd: tests/test_deployment.py builds the wheel and checks the unit",
}
# `export X=...   # ..., the answer's "token"`: a value a person copies from the answer before it.
# `export X=...   # ..., the answer's "token"` (or a path into it: `"items"[0]["id"]`)
PASTED = re.compile(r'^export (\w+)=\S+\s+#.*the answer\'s ((?:\[?"\w+"\]?|\[\d+\])+)')
STEP = re.compile(r'\[?"(\w+)"\]?|\[(\d+)\]')


def pasted_value(answer: str, path: str) -> str:
    """The value a reader copies from a JSON answer, following `"key"` and `[index]` steps."""
    value = json.loads(answer)
    for key, index in STEP.findall(path):
        value = value[key] if key else value[int(index)]
    return str(value)


def _commands(block: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, comments and blank lines dropped."""
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def _local(command: str, gateway_port: int, fake_port: int) -> str:
    return command.replace("localhost:4000", f"127.0.0.1:{gateway_port}").replace(
        "127.0.0.1:4000", f"127.0.0.1:{gateway_port}").replace("9100", str(fake_port))


def run_block(block: str, shell_env: dict[str, str], gateway: Gateway, fake_port: int,
              cwd: Path | None = None) -> list[str]:
    """Run a block's commands in bash one by one (in `cwd`); an `export` of a pasted value takes it from the
    answer before."""
    answers: list[str] = []
    for command in _commands(block):
        if command.startswith("export "):
            pasted = PASTED.match(command)
            assert pasted or command.startswith("export ADMIN="), command
            if pasted:
                shell_env[pasted.group(1)] = pasted_value(answers[-1], pasted.group(2))
            continue
        done = subprocess.run(["bash", "-c", _local(command, gateway.port, fake_port)], env=shell_env, cwd=cwd,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        answers.append(done.stdout)
    return answers


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    languages = [language for language, _ in BLOCKS]
    assert languages == ["sh", "sh", "sh", "python"], languages
    (serve_block, fake_block, calls_block, sdk_block) = (body for _, body in BLOCKS)

    # terminal 1: `LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS=true make run` = that setting + `llm-gateway serve`.
    (serve_command,) = _commands(serve_block)
    settings, _, make = serve_command.rpartition(" make ")
    assert serve_command.endswith("make run") and make == "run"
    env = dict(pair.split("=", 1) for pair in shlex.split(settings))

    # terminal 2: the fake upstream, run as the README has it (on a free port rather than 9100).
    (fake_command,) = _commands(fake_block)
    argv = shlex.split(fake_command)
    assert argv[:3] == [".venv/bin/python", "-m", "tests.fakes.openai_upstream"]
    key = argv[argv.index("--key") + 1]
    fake, fake_url = start_fake(key)
    fake_port = int(fake_url.rsplit(":", 1)[1].split("/", 1)[0])
    gateway = Gateway(tmp_path, **env)
    try:
        # terminal 3, line by line; the two `export X=lgw_...` lines are the tokens a person pastes.
        shell_env = {**os.environ, "ADMIN": gateway.admin_token}
        answers = run_block(calls_block, shell_env, gateway, fake_port)
        user, configuration, completion = (json.loads(answer) for answer in answers)
        assert user["name"] == "alice" and user["token"].startswith("lgw_")
        assert configuration["name"] == "work-gpt" and key not in json.dumps(configuration)
        assert completion["object"] == "chat.completion" and completion["choices"][0]["message"]["content"]

        # the openai SDK block, as written, with TOKEN in its environment
        sdk = subprocess.run([sys.executable, "-c", _local(sdk_block, gateway.port, fake_port)],
                             env={**os.environ, "TOKEN": shell_env["TOKEN"]}, capture_output=True, text=True,
                             timeout=60)
        assert sdk.returncode == 0 and sdk.stdout.strip(), sdk.stderr

        # the web page and what its Usage tab loads
        status, page = gateway.call("GET", "/ui/usage", "")
        assert status == 200 and "<html" in page.lower()
        deadline = time.monotonic() + 30
        while True:
            status, usage = gateway.call("GET", "/api/usage?group_by=configuration", shell_env["TOKEN"])
            assert status == 200, usage
            if usage["totals"]["requests"] >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert usage["totals"]["requests"] == 2, usage
        assert gateway.call("GET", "/api/docs", "")[0] == 200

        check_teams_walkthrough(shell_env, gateway, fake_port, key)
        check_testing_page(shell_env, gateway, fake_port)
        check_templates_page(shell_env, gateway, fake_port, key)
        check_backups_page(shell_env, gateway, fake_port, tmp_path, key)
        check_sdk_page(shell_env, gateway, fake_port)
    finally:
        gateway.stop()
        stop_fake(fake)


def check_teams_walkthrough(shell_env: dict[str, str], gateway: Gateway, fake_port: int, key: str) -> None:
    """The Teams page's block, on the gateway the five-minute walkthrough left: bob, a team, a member, a team
    configuration that bob lists masked and calls as <team>/<name>."""
    assert [language for language, _ in TEAMS_BLOCKS] == ["sh"]
    answers = run_block(TEAMS_BLOCKS[0][1], shell_env, gateway, fake_port)
    bob, team, invited, invitations, accepted, configuration, listed, completion = (json.loads(answer)
                                                                                   for answer in answers)
    assert bob["name"] == "bob" and shell_env["BOB"] == bob["token"]
    assert team["name"] == "research" and team["role"] == "owner" and shell_env["TEAM"] == team["id"]
    assert invited["status"] == "invited"  # the same answer whether or not bob exists
    (invitation,) = invitations["items"]
    assert invitation["team"] == {"id": team["id"], "name": "research"} and shell_env["INVITATION"] == invitation["id"]
    assert accepted, accepted
    assert configuration["team"] == {"id": team["id"], "name": "research"} and key not in json.dumps(configuration)
    assert [c["name"] for c in listed["items"]] == ["shared-gpt"] and key not in json.dumps(listed)
    assert completion["object"] == "chat.completion" and completion["choices"][0]["message"]["content"]


def check_testing_page(shell_env: dict[str, str], gateway: Gateway, fake_port: int) -> None:
    """Testing configurations: an unsaved one, the default by the id the stats name, then all: each a success."""
    (block,) = page_blocks("concepts/testing.md")
    assert block[0] == "sh"
    unsaved, stats, saved, every = (json.loads(answer) for answer in run_block(block[1], shell_env, gateway,
                                                                               fake_port))
    assert unsaved["success"] and unsaved["status"] == "success", unsaved
    assert shell_env["ID"] == stats["default_id"] and saved["success"], saved
    assert every["summary"]["total"] >= 1 and every["summary"]["success"] == every["summary"]["total"], every


def check_templates_page(shell_env: dict[str, str], gateway: Gateway, fake_port: int, key: str) -> None:
    """Templates: the catalogue, then the self-hosted template applied to the fake and tested."""
    (block,) = page_blocks("concepts/templates.md")
    assert block[0] == "sh"
    catalogue, applied = (json.loads(answer) for answer in run_block(block[1], shell_env, gateway, fake_port))
    assert "self-hosted" in [t["id"] for t in catalogue["items"]]
    assert [c["provider"] for c in applied["configurations"]] == ["vllm"] and key not in json.dumps(applied)
    assert [t["status"] for t in applied["tests"]] == ["success"], applied


def check_backups_page(shell_env: dict[str, str], gateway: Gateway, fake_port: int, tmp_path: Path,
                       key: str) -> None:
    """Export without keys into a file, then a dry-run import of it: everything unchanged, no key anywhere."""
    (block,) = page_blocks("how-to/backups.md")
    assert block[0] == "sh"
    written, report = run_block(block[1], shell_env, gateway, fake_port, cwd=tmp_path)
    exported = json.loads((tmp_path / "export.json").read_text())
    assert written == "" and "work-gpt" in [c["name"] for c in exported["configurations"]]
    assert key not in (tmp_path / "export.json").read_text()
    dry = json.loads(report)
    assert dry["dry_run"] and not dry["created"] and "work-gpt" in dry["unchanged"], dry


def check_sdk_page(shell_env: dict[str, str], gateway: Gateway, fake_port: int) -> None:
    """The openai SDK page's Python block, as written, with TOKEN in its environment."""
    (block,) = page_blocks("how-to/openai-sdks.md")
    assert block[0] == "python"
    sdk = subprocess.run([sys.executable, "-c", _local(block[1], gateway.port, fake_port)],
                         env={**os.environ, "TOKEN": shell_env["TOKEN"]}, capture_output=True, text=True, timeout=60)
    assert sdk.returncode == 0, sdk.stderr
    models, owner, content = sdk.stdout.strip().splitlines()
    assert "'work-gpt'" in models and owner == "openai" and content


def test_every_example_block_is_run_or_says_why_not() -> None:
    """Shell and Python blocks of the README and docs/: run by the walkthrough above, or in NOT_RUN."""
    run = {("README.md", body) for _, body in BLOCKS}
    for page in ("concepts/teams.md", "concepts/testing.md", "concepts/templates.md", "how-to/backups.md",
                 "how-to/openai-sdks.md"):
        run |= {(f"docs/{page}", body) for _, body in page_blocks(page)}
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    unaccounted, stale = [], set(NOT_RUN)
    for path in pages:
        name = str(path.relative_to(REPO))
        for language, body in FENCE.findall(path.read_text()):
            if language not in ("sh", "python") or (name, body) in run:
                continue
            first = next(line.strip() for line in body.splitlines() if line.strip())
            if (name, first) in NOT_RUN:
                stale.discard((name, first))
            else:
                unaccounted.append(f"{name}: {first}")
    assert unaccounted == [] and stale == set(), (unaccounted, stale)
