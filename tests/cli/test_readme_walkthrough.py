"""The README's walkthroughs, run as written: their code blocks are read from the README and executed against a
real `serve` process and the bundled fake upstream (only ports and the values a person pastes are filled in).
The five-minute walkthrough runs first; the Teams section's two-minute one goes on from where it ends."""

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
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", SECTION, re.S)
TEAMS_SECTION = README.split("\n## Teams\n", 1)[1].split("\n## ", 1)[0]
TEAMS_BLOCKS = re.findall(r"```(\w+)\n(.*?)```", TEAMS_SECTION, re.S)
# `export X=...   # ..., the answer's "token"`: a value a person copies from the answer before it.
PASTED = re.compile(r'^export (\w+)=\S+\s+#.*the answer\'s "(\w+)"')


def _commands(block: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, comments and blank lines dropped."""
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def _local(command: str, gateway_port: int, fake_port: int) -> str:
    return command.replace("localhost:4000", f"127.0.0.1:{gateway_port}").replace(
        "127.0.0.1:4000", f"127.0.0.1:{gateway_port}").replace("9100", str(fake_port))


def run_block(block: str, shell_env: dict[str, str], gateway: Gateway, fake_port: int) -> list[str]:
    """Run a block's commands in bash one by one; an `export` of a pasted value takes it from the answer before."""
    answers: list[str] = []
    for command in _commands(block):
        if command.startswith("export "):
            pasted = PASTED.match(command)
            assert pasted or command.startswith("export ADMIN="), command
            if pasted:
                shell_env[pasted.group(1)] = str(json.loads(answers[-1])[pasted.group(2)])
            continue
        done = subprocess.run(["bash", "-c", _local(command, gateway.port, fake_port)], env=shell_env,
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
    finally:
        gateway.stop()
        stop_fake(fake)


def check_teams_walkthrough(shell_env: dict[str, str], gateway: Gateway, fake_port: int, key: str) -> None:
    """The Teams section's block, on the gateway the five-minute walkthrough left: bob, a team, a member, a team
    configuration that bob lists masked and calls as <team>/<name>."""
    assert [language for language, _ in TEAMS_BLOCKS] == ["sh"]
    answers = run_block(TEAMS_BLOCKS[0][1], shell_env, gateway, fake_port)
    bob, team, member, configuration, listed, completion = (json.loads(answer) for answer in answers)
    assert bob["name"] == "bob" and shell_env["BOB"] == bob["token"]
    assert team["name"] == "research" and team["role"] == "owner" and shell_env["TEAM"] == team["id"]
    assert member["name"] == "bob" and member["role"] == "member"
    assert configuration["team"] == {"id": team["id"], "name": "research"} and key not in json.dumps(configuration)
    assert [c["name"] for c in listed["items"]] == ["shared-gpt"] and key not in json.dumps(listed)
    assert completion["object"] == "chat.completion" and completion["choices"][0]["message"]["content"]
