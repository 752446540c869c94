"""The documentation site builds with `mkdocs build --strict` (what `make docs` runs): a broken link or a missing
page fails it, and its reference shows every setting, command, error code and metric the code has; a setting
without a description or a command without help fails the build."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from pydantic import Field

from gateway.cli.main import build_parser
from gateway.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]  # not --quiet: it hides the warnings strict counts


def hook() -> ModuleType:
    """docs/hooks/reference.py, loaded as MkDocs loads it (by path)."""
    spec = importlib.util.spec_from_file_location("reference_hook", REPO / "docs" / "hooks" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([*MKDOCS, "--site-dir", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return out


def page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text()


def commands(parser: argparse.ArgumentParser, prefix: str = "llm-gateway") -> list[str]:
    """Every command and subcommand, and the actions chosen by a positional (`db upgrade`, `keys rotate`)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix} {name}")
                found += commands(sub, f"{prefix} {name}")
        elif not action.option_strings and action.choices:
            found += [f"{prefix} {choice}" for choice in action.choices]
    return found


def test_every_setting_command_error_code_and_metric_is_in_the_reference(site: Path) -> None:
    settings = page(site, "reference/settings")
    assert [n for n in Settings.model_fields if f"LLM_GATEWAY_{n.upper()}" not in settings] == []
    cli = page(site, "reference/cli")
    listed = commands(build_parser())
    assert {"llm-gateway db upgrade", "llm-gateway keys rotate", "llm-gateway import litellm-config"} <= set(listed)
    # A command has its own heading; an action chosen by a positional is named among that argument's choices.
    missing = [c for c in listed if f"<code>{c}</code>" not in cli
               and f"<code>{c.rsplit(' ', 1)[1]}</code>" not in cli.split(f"<code>{c.rsplit(' ', 1)[0]}</code>", 1)[-1]]
    assert missing == []
    # Codes found by a plain text search of the sources, not by the hook's own reading of them.
    codes = set()
    for root in ("src/gateway", "src/admin"):
        for path in (REPO / root).rglob("*.py"):
            codes |= set(re.findall(r'\bcode\s*=\s*"([a-z_]+)"', path.read_text()))
            codes |= set(re.findall(r'\bstatus, (?:type, )?code = (?:\d+, )?(?:"\w+", )?"([a-z_]+)"', path.read_text()))
    errors = page(site, "reference/errors")
    assert len(codes) > 40 and sorted(c for c in codes if f"<code>{c}</code>" not in errors) == []
    metrics = page(site, "reference/metrics")
    for name in ("llm_gateway_requests_total", "llm_gateway_queue_wait_seconds", "llm_gateway_upstream_connections",
                 "process_resident_memory_bytes"):
        assert f"<code>{name}</code>" in metrics
    api = page(site, "reference/api")
    assert "<code>/v1/models/{model}</code>" in api and "<code>/api/llm-configurations/{id}/test</code>" in api
    # The walkthrough is the README's, rendered into the getting-started page.
    assert "terminal 3" in page(site, "getting-started")


def test_an_undocumented_setting_or_command_stops_the_reference() -> None:
    reference = hook()
    example = (REPO / "config" / "gateway.example.toml").read_text()
    assert "LLM_GATEWAY_QUEUE_TIMEOUT_S" in reference.settings_reference(Settings, example)

    class Planted(Settings):
        shiny_new_knob: int = Field(default=3, ge=1)

    with pytest.raises(reference.Undocumented, match=r"settings without a description .*: shiny_new_knob$"):
        reference.settings_reference(Planted, example)
    described = example + "\n# How shiny the new knob is.\nshiny_new_knob = 3\n"
    assert "How shiny the new knob is." in reference.settings_reference(Planted, described)

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    subparsers.add_parser("frobnicate")
    with pytest.raises(reference.Undocumented, match=r"commands without help text: llm-gateway frobnicate$"):
        reference.cli_reference(parser)


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs, ignore=shutil.ignore_patterns("hooks", "__pycache__"))
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    config.update(docs_dir=str(docs), site_dir=str(tmp_path / "site"),
                  hooks=[str(REPO / "docs" / "hooks" / "reference.py")])
    config.pop("exclude_docs")
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    clean = subprocess.run([*MKDOCS, "-f", str(tmp_path / "mkdocs.yml")], capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr  # the copy builds as the original does
    with (docs / "concepts" / "selection.md").open("a") as page_file:
        page_file.write("\nSee [the pools page](pools.md).\n")
    broken = subprocess.run([*MKDOCS, "-f", str(tmp_path / "mkdocs.yml")], capture_output=True, text=True,
                            timeout=300)
    assert broken.returncode != 0 and "pools.md" in broken.stderr
