"""A third-party OpenAI-compatible server to put behind the gateway: LiteLLM's proxy (`litellm --config`), a real
process on a free loopback port, whose models answer from litellm's `mock_response` without any network.

It runs from its own virtualenv (PROXY_VENV, made by `make install` from constraints-litellm-proxy.txt): the
`litellm[proxy]` extra pins websockets<16 and rich<14, older than the test extra's, so it cannot share .venv.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROXY_VENV = Path(os.environ.get("TEST_LITELLM_PROXY_VENV", REPO / ".venv-litellm-proxy"))
REPLY = "Hello from LiteLLM"
MODEL = "mock-gpt"  # answers REPLY, streamed or not, with usage
RATE_LIMITED = "mock-rate-limited"  # answers 429 every time
# No database, no retries of its own, no telemetry; LiteLLM's answers come from the config, never the network.
CONFIG = {
    "model_list": [
        {"model_name": MODEL, "litellm_params": {"model": "openai/gpt-4o-mini", "mock_response": REPLY}},
        {"model_name": RATE_LIMITED,
         "litellm_params": {"model": "openai/gpt-4o-mini", "mock_response": "litellm.RateLimitError"}},
    ],
    "litellm_settings": {"telemetry": False, "num_retries": 0},
    "router_settings": {"num_retries": 0},
    "general_settings": {},
}
START_TIMEOUT_S = 90.0  # ~6 s on an idle core, ~20 s on a busy 2-core machine


@dataclass(frozen=True)
class LiteLLMProxy:
    """The running proxy: its OpenAI base URL (…/v1) and its master key (the key a configuration stores)."""

    url: str
    master_key: str
    proc: subprocess.Popen[bytes]
    log: Path


def _log_tail(log: Path, limit: int = 6000) -> str:
    return log.read_text(errors="replace")[-limit:] if log.exists() else "(no output)"


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def start(workdir: Path, port: int) -> LiteLLMProxy:
    """Start the proxy and wait until it answers; fails (never skips) with its output when it cannot."""
    binary = PROXY_VENV / "bin" / "litellm"
    assert binary.exists(), f"{binary} is missing: `make install` makes it (LiteLLM proxy's own virtualenv)"
    master_key = "sk-" + secrets.token_hex(24)  # the proxy refuses a weak master key
    config = workdir / "litellm_config.json"  # YAML is a superset of JSON
    config.write_text(json.dumps(CONFIG))
    log = workdir / "litellm-proxy.out"  # not *.log: the proxy's own output is not the gateway's
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LITELLM_", "OPENAI_"))}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY_DISABLED="true", LITELLM_MASTER_KEY=master_key,
               NO_PROXY="*", no_proxy="*")
    with log.open("wb") as out:
        proc = subprocess.Popen([str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                                cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    proxy = LiteLLMProxy(f"http://127.0.0.1:{port}/v1", master_key, proc, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _ready(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proxy)
            why = f"exited with {proc.returncode}" if proc.returncode is not None else \
                f"not ready within {START_TIMEOUT_S:.0f} s"
            raise AssertionError(f"LiteLLM proxy {why}:\n{_log_tail(log)}")
        time.sleep(0.2)
    return proxy


def stop(proxy: LiteLLMProxy) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    if proxy.proc.poll() is None:
        proxy.proc.terminate()
        try:
            proxy.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proxy.proc.kill()
            proxy.proc.wait(timeout=15)
