"""`llm-gateway import litellm-config`: a LiteLLM proxy config.yaml becomes one user's configurations (name,
provider/model, base URL, keys from the environment or literal, fallbacks), missing keys leave inactive
configurations, what has no equivalent is reported, and no key is ever printed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.accounts.users import get_user_by_name
from gateway.configurations.cleared import has_key
from gateway.configurations.crud import decrypt_key, list_user_configurations
from gateway.crypto.keyring import KeyRing
from gateway.settings import parse_key_ring
from gateway.store.db import make_engine, make_sessionmaker
from tests.cli.test_cli import cli
from tests.leakwatch import new_watched_key

CONFIG = """
model_list:
  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: os.environ/IMPORT_OPENAI_KEY
      api_base: https://api.example.com/v1
      rpm: 60
  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/IMPORT_OPENAI_KEY
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_key: {literal}
  - model_name: llama
    litellm_params:
      model: groq/llama-3.3-70b-versatile
      api_key: os.environ/IMPORT_UNSET_KEY
  - model_name: bedrock-claude
    litellm_params:
      model: bedrock/anthropic.claude-3-sonnet
router_settings:
  fallbacks: [{{"gpt": ["claude", "bedrock-claude", "llama"]}}]
general_settings:
  master_key: {master}
"""


def stored(url: str, ring: str) -> dict[str, dict[str, Any]]:
    """alice's configurations by name: provider, model, base URL, active, fallback names, the decrypted key."""
    async def read() -> dict[str, dict[str, Any]]:
        engine = make_engine(url)
        keyring = KeyRing.from_entries(parse_key_ring(ring))
        try:
            async with make_sessionmaker(engine)() as session:
                user = await get_user_by_name(session, name="alice")
                assert user is not None
                rows = await list_user_configurations(session, user_id=user.id)
        finally:
            await engine.dispose()
        names = {str(r.id): r.name for r in rows}
        return {r.name: {"provider": r.provider, "model": r.model, "base_url": r.base_url, "active": r.is_active,
                         "fallbacks": [names[str(f)] for f in r.fallback_ids or ()],
                         "key": decrypt_key(keyring, r) if has_key(keyring, r) else None} for r in rows}
    return asyncio.run(read())


def test_litellm_config_imports_as_configurations_without_printing_a_key(
        tmp_path: Path, database_url: str, key_ring: str) -> None:
    env_key, literal, master = (new_watched_key(40, "test_import_litellm") for _ in range(3))
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(literal=literal, master=master))
    env = {"LLM_GATEWAY_DATABASE_URL": database_url, "LLM_GATEWAY_ENCRYPTION_KEYS": key_ring,
           "IMPORT_OPENAI_KEY": env_key}
    assert cli("users", "create", "alice", cwd=tmp_path, **env).returncode == 0

    def run(*extra: str) -> dict[str, Any]:
        done = cli("import", "litellm-config", str(config), "--user", "alice", *extra, cwd=tmp_path, **env)
        assert done.returncode == 0, done.stderr
        for key in (env_key, literal, master):
            assert key not in done.stdout + done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    dry = run("--dry-run")
    assert dry["dry_run"] and dry["created"] == ["gpt", "claude", "llama"] and stored(database_url, key_ring) == {}

    report = run()
    assert report["created"] == ["gpt", "claude", "llama"] and report["needs_key"] == ["llama"]
    assert report["missing_keys"] == [{"name": "llama", "reason": "created inactive: environment variable "
                                       "IMPORT_UNSET_KEY is not set; set its key to use it"}]
    not_mapped = {(n["name"], n["reason"].split(":")[0].split(" (")[0]) for n in report["not_mapped"]}
    assert not_mapped == {
        ("gpt", "another deployment of the same model_name"),
        ("gpt", "litellm_params ignored"),
        ("bedrock-claude", "litellm_params.model 'bedrock/anthropic.claude-3-sonnet' does not start with the name "
                           "of a provider the gateway knows"),
        ("gpt", "fallback 'bedrock-claude' is not an imported model_name"),
    }, report["not_mapped"]
    assert stored(database_url, key_ring) == {
        "gpt": {"provider": "openai", "model": "gpt-4o-mini", "base_url": "https://api.example.com/v1",
                "active": True, "fallbacks": ["claude", "llama"], "key": env_key},
        "claude": {"provider": "anthropic", "model": "claude-sonnet-4-5", "base_url": None, "active": True,
                   "fallbacks": [], "key": literal},
        "llama": {"provider": "groq", "model": "llama-3.3-70b-versatile", "base_url": None, "active": False,
                  "fallbacks": [], "key": None},
    }

    again = run()  # importing the same file again changes nothing
    assert again["created"] == [] and again["unchanged"] == ["gpt", "claude", "llama"]


def test_a_file_that_is_not_a_litellm_config_is_one_line(tmp_path: Path, database_url: str, key_ring: str) -> None:
    secret = new_watched_key(40, "test_import_litellm")
    env = {"LLM_GATEWAY_DATABASE_URL": database_url, "LLM_GATEWAY_ENCRYPTION_KEYS": key_ring}
    assert cli("users", "create", "alice", cwd=tmp_path, **env).returncode == 0
    for name, text, needle in (
            ("broken.yaml", f"model_list: [{{api_key: {secret}\n", "not valid YAML"),
            ("wrong.yaml", f"model_list: [{{model_name: x, litellm_params: {{api_key: {secret}}}}}]\n",
             "model_list.0.litellm_params.model: Field required"),
            ("empty.yaml", "general_settings: {}\n", "model_list: Field required")):
        (tmp_path / name).write_text(text)
        done = cli("import", "litellm-config", str(tmp_path / name), "--user", "alice", cwd=tmp_path, **env)
        assert done.returncode == 2 and needle in done.stderr and secret not in done.stdout + done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    nobody = cli("import", "litellm-config", str(tmp_path / "broken.yaml"), "--user", "nobody", cwd=tmp_path, **env)
    assert nobody.returncode == 2
    assert stored(database_url, key_ring) == {}
