"""Template documents: the built-ins load, an operator's file is validated with one-line errors naming the file,
template and field (and refuses start-up), and `templates check` finds models litellm's catalog does not know."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.configurations.providers import ProviderCatalog
from gateway.templates.catalog import TemplateCatalog, TemplateError
from tests.fresh import run_fresh

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
[[templates]]
id = "team-chat"
title = "Team chat"
description = "Our vetted chat model."
inputs = [{ id = "openai_key", kind = "api_key", provider = "openai", label = "OpenAI key" }]
configurations = [{ name = "Team chat", provider = "openai", model = "gpt-4o" }]
"""


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLM_GATEWAY_")}
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**clean, "PYTHONPATH": str(ROOT / "src"), **env})


def test_builtins_and_operator_templates_load(tmp_path: Path) -> None:
    path = tmp_path / "templates.toml"
    path.write_text(GOOD)
    catalog = TemplateCatalog.load(ProviderCatalog.load(), path)
    sources = {t.id: t.source for t in catalog.items()}
    assert sources["coding-agent"] == "builtin" and sources["team-chat"] == "operator"
    assert list(sources)[-1] == "team-chat"  # beside the built-ins, after them
    assert catalog.get("coding-agent").providers() == ["anthropic", "openai"]  # type: ignore[union-attr]


@pytest.mark.parametrize(("change", "message"), [
    (('model = "gpt-4o"', 'modle = "gpt-4o"'), "template 'team-chat': field 'configurations[0].model': Field required"),
    (('provider = "openai", model', 'provider = "nope", model'),
     "template 'team-chat': field 'configurations[0].provider': unknown provider 'nope'"),
    (('kind = "api_key"', 'kind = "password"'), "template 'team-chat': field 'inputs[0].kind': Input should be"),
    (('inputs = [{ id = "openai_key", kind = "api_key", provider = "openai", label = "OpenAI key" }]', 'inputs = []'),
     "template 'team-chat': field 'inputs': no api_key input for provider 'openai'"),
    (('label = "OpenAI key" }', 'label = "OpenAI key", required = false }'),
     "template 'team-chat': field 'inputs[0].required': provider 'openai' needs a key"),
    (('id = "team-chat"', 'id = "coding-agent"'), "template 'coding-agent': field 'id': a built-in template"),
    (('id = "team-chat"', 'id = "Team Chat!"'), "template 'Team Chat!': field 'id': String should match"),
    (('title = "Team chat"', 'title = "Team chat"\nsource = "builtin"'), "template 'team-chat': field 'source'"),
    (('[[templates]]', '[[templatez]]'), "field 'templatez': Extra inputs are not permitted"),
    (('"Our vetted chat model."', '"unterminated'), "invalid TOML"),
])
def test_operator_file_errors_name_file_template_and_field(tmp_path: Path, change: tuple[str, str],
                                                           message: str) -> None:
    path = tmp_path / "templates.toml"
    assert change[0] in GOOD
    path.write_text(GOOD.replace(*change))
    with pytest.raises(TemplateError) as caught:
        TemplateCatalog.load(ProviderCatalog.load(), path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_a_bad_operator_file_refuses_start_up_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "templates.toml"
    path.write_text(GOOD.replace('provider = "openai", model', 'provider = "nope", model'))
    result = cli("serve", "--port", "1", cwd=tmp_path, LLM_GATEWAY_TEMPLATES_FILE=str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"llm-gateway: invalid setting LLM_GATEWAY_TEMPLATES_FILE: {path}: template 'team-chat': "
                     "field 'configurations[0].provider': unknown provider 'nope'"], result.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was written


def test_templates_check_passes_on_the_builtins(tmp_path: Path) -> None:
    result = cli("templates", "check", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unknown" in result.stdout.splitlines()[-1] and "no unknown models" in result.stdout


def test_templates_check_reports_a_model_litellm_does_not_know(tmp_path: Path) -> None:
    path = tmp_path / "templates.toml"
    path.write_text(GOOD.replace('model = "gpt-4o"', 'model = "gpt-0-retired"'))
    result = cli("templates", "check", cwd=tmp_path, LLM_GATEWAY_TEMPLATES_FILE=str(path))
    assert result.returncode == 1
    assert ("template 'team-chat' (operator): configuration 'Team chat': model 'gpt-0-retired' of provider "
            "'openai' is not in litellm's catalog") in result.stdout


def test_the_check_reads_litellms_catalog_without_importing_it() -> None:
    script = ("import sys\nfrom gateway.templates.check import model_data\n"
              "assert 'gpt-4o-mini' in model_data()\nassert 'litellm' not in sys.modules\nprint('ok')")
    assert run_fresh(script, timeout=60).strip() == "ok"


def test_the_example_operator_file_is_valid() -> None:
    catalog = TemplateCatalog.load(ProviderCatalog.load(), ROOT / "config" / "templates.example.toml")
    assert [t.id for t in catalog.items() if t.source == "operator"] == ["team-gateway", "codestral"]
