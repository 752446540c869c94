"""MkDocs hook (mkdocs.yml `hooks:`): the reference pages that come from the code are rendered at build time, so
they cannot drift from it. A page asks for one with a marker line, `<!-- reference:settings -->` (settings, cli,
errors, metrics, api); `<!-- readme:Five-minute walkthrough -->` takes that section of the README. A setting
without a description in config/gateway.example.toml, or a command without help text, stops the build with a
message naming it."""

from __future__ import annotations

import argparse
import ast
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SETTINGS = REPO / "config" / "gateway.example.toml"
SOURCES = (REPO / "src" / "gateway", REPO / "src" / "admin")
MARKER = re.compile(r"^<!-- reference:(\w+) -->$", re.M)
README_MARKER = re.compile(r"^<!-- readme:(.+) -->$", re.M)
KEY_LINE = re.compile(r"^#?\s*([a-z_]+)\s*=")


class Undocumented(Exception):
    """Something the code has that the reference cannot describe."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def setting_descriptions(example: str) -> dict[str, str]:
    """Each key of the example settings file (set or commented out) → the comment block above it; a key on the
    line right after another key shares that key's block."""
    descriptions: dict[str, str] = {}
    pending: list[str] = []
    shared = ""
    for line in example.splitlines():
        key = KEY_LINE.match(line)
        if key:
            description = " ".join(pending) or shared
            descriptions[key.group(1)] = description
            pending = []
            shared = description
        elif line.startswith("#"):
            pending.append(line.lstrip("#").strip())
            shared = ""
        else:
            pending, shared = [], ""
    return descriptions


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    text = re.sub(r"\b[\w.]+\.(\w+)", r"\1", text).replace("SecretStr", "secret").replace("Path", "path")
    return text.replace("None", "none")


def _default(field: Any) -> str:
    default = field.default
    if default is None:
        return "none"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, Path) and not default.is_absolute():
        return f"`./{default}`"
    return f"`{default}`"


def _bounds(field: Any) -> str:
    found = []
    for rule in field.metadata:
        for name, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(rule, name, None)
            if value is not None:
                found.append(f"{sign} {value}")
    return ", ".join(found)


def settings_reference(settings: type[BaseSettings], example: str) -> str:
    """The settings table: every field of `settings`, described by the example file's comments."""
    descriptions = setting_descriptions(example)
    missing = [name for name in settings.model_fields if not descriptions.get(name)]
    if missing:
        raise Undocumented(f"settings without a description in config/gateway.example.toml: {', '.join(missing)}")
    rows = ["| setting | type | default | what |", "|---|---|---|---|"]
    for name, field in settings.model_fields.items():
        kind = _type(field.annotation)
        bounds = _bounds(field)
        rows.append(f"| `LLM_GATEWAY_{name.upper()}` | {_cell(str(kind))}{' (' + bounds + ')' if bounds else ''} "
                    f"| {_default(field)} | {_cell(descriptions[name])} |")
    return "\n".join(rows)


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = ", ".join(action.option_strings) or action.dest
        notes = [action.help or ""]
        if action.choices:
            notes.append("one of " + ", ".join(f"`{c}`" for c in action.choices))
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            notes.append(f"default `{action.default}`")
        rows.append(f"| `{name}` | {_cell('; '.join(n for n in notes if n))} |")
    return rows


def cli_reference(parser: argparse.ArgumentParser) -> str:
    """One section per command (and subcommand) of `parser`: usage, what it does, its arguments."""
    lines: list[str] = []
    missing: list[str] = []

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        for name, help_text, sub in _subcommands(parser):
            command = f"{prefix} {name}"
            if not help_text:
                missing.append(command)
            children = list(_subcommands(sub))
            lines.extend([f"### `{command}`", "", help_text.rstrip(".") + ".", ""])
            if sub.description and sub.description != help_text:
                lines.extend([sub.description, ""])
            lines.extend(["```text", sub.format_usage().strip().removeprefix("usage: "), "```", ""])
            arguments = _arguments(sub)
            if arguments:
                lines.extend(["| argument | |", "|---|---|", *arguments, ""])
            if children:
                walk(command, sub)

    walk(parser.prog, parser)
    if missing:
        raise Undocumented(f"commands without help text: {', '.join(missing)}")
    return "\n".join(lines)


def error_classes() -> list[tuple[str, int, str, str]]:
    """(class, status, type, default code) of each class of the error tree."""
    from gateway import errors

    found = [(cls.__name__, cls.status, cls.type, cls.code) for _, cls in inspect.getmembers(errors, inspect.isclass)
             if issubclass(cls, errors.GatewayError)]
    return sorted(found, key=lambda row: (row[1], row[0]))


def _message(call: ast.Call) -> str:
    """The first argument's literal text (an f-string's fixed parts, `…` for the rest)."""
    if not call.args:
        return ""
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    if isinstance(first, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "…" for part in first.values)
    return ""


def error_codes(roots: tuple[Path, ...] = SOURCES) -> dict[str, list[tuple[int, str, str]]]:
    """Every `code="..."` given to an error in the sources: code → [(status, module, message)], the status the
    call gives (`status=`) or its class's."""
    classes = {name: status for name, status, *_ in error_classes()}
    codes: dict[str, list[tuple[int, str, str]]] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            # Module constants (`CLIENT_CLOSED = 499`), for a status given by name.
            constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                         and isinstance(node.value, ast.Constant) for target in node.targets
                         if isinstance(target, ast.Name)}
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                given = {k.arg: k.value.value if isinstance(k.value, ast.Constant) else constants.get(k.value.id)
                         for k in node.keywords if isinstance(k.value, ast.Constant | ast.Name)}
                if func in classes and isinstance(given.get("code"), str):
                    status = given.get("status")
                    module = ".".join(path.relative_to(REPO / "src").with_suffix("").parts)
                    codes.setdefault(str(given["code"]), []).append(
                        (status if isinstance(status, int) else classes[func], module, _message(node)))
    return codes


def errors_reference() -> str:
    """The error tree's classes, then every code the gateway gives an error, with where and a message."""
    rows = ["| class | status | type | code |", "|---|---|---|---|"]
    rows += [f"| `{name}` | {status} | `{kind}` | `{code}` |" for name, status, kind, code in error_classes()]
    rows += ["", "| code | status | raised in | for example |", "|---|---|---|---|"]
    for code, uses in sorted(error_codes().items()):
        status = ", ".join(sorted({str(status) for status, _, _ in uses}))
        modules = ", ".join(sorted({f"`{module}`" for _, module, _ in uses}))
        example = next((message for _, _, message in uses if message), "")
        rows.append(f"| `{code}` | {status} | {modules} | {_cell(example)} |")
    return "\n".join(rows)


def metrics_reference() -> str:
    """Every metric family /metrics serves, read from the collectors the app registers."""
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from gateway.proxy.admission import Admission
    from gateway.proxy.metrics import ProxyMetrics
    from gateway.web import runtime_metrics

    metrics = ProxyMetrics()
    registry: CollectorRegistry = metrics.registry
    Admission(limit=1, per_user=1, queue_timeout_s=1.0, body_bytes_per_user=1, registry=registry)
    runtime_metrics.register(web.Application(), registry)
    rows = ["| metric | type | what |", "|---|---|---|"]
    for family in sorted(registry.collect(), key=lambda f: f.name):
        suffix = "_total" if family.type == "counter" else ""
        rows.append(f"| `{family.name}{suffix}` | {family.type} | {_cell(family.documentation)} |")
    return "\n".join(rows)


def api_reference() -> str:
    """Method, path and summary of every operation in /api/openapi.json, by tag."""
    from admin import REGISTRIES
    from admin.openapi import build_document, openapi_registry

    document = build_document([*REGISTRIES, openapi_registry(REGISTRIES)])
    by_tag: dict[str, list[str]] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            tag = (operation.get("tags") or ["other"])[0]
            summary = _cell(operation.get("summary", ""))
            by_tag.setdefault(tag, []).append(f"| {method.upper()} | `{path}` | {summary} |")
    lines = []
    for tag in sorted(by_tag):
        lines += [f"### {tag}", "", "| method | path | does |", "|---|---|---|", *by_tag[tag], ""]
    return "\n".join(lines)


def _settings_page() -> str:
    from gateway.settings import Settings

    return settings_reference(Settings, EXAMPLE_SETTINGS.read_text(encoding="utf-8"))


def _cli_page() -> str:
    from gateway.cli.main import build_parser

    return cli_reference(build_parser())


RENDERERS: dict[str, Callable[[], str]] = {
    "settings": _settings_page, "cli": _cli_page, "errors": errors_reference, "metrics": metrics_reference,
    "api": api_reference,
}


def readme_section(title: str, readme: str) -> str:
    """A `## title` section of the README, its links made relative to docs/ (pages there use it as it is, so
    the walkthrough has one text)."""
    head = f"## {title}\n"
    if head not in readme:
        raise Undocumented(f"README.md has no section '{title}'")
    section = head + readme.split(head, 1)[1].split("\n## ", 1)[0]
    return section.replace("](docs/", "](")


def render(markdown: str) -> str:
    """The page with each marker replaced: reference tables, README sections."""
    markdown = MARKER.sub(lambda marker: RENDERERS[marker.group(1)](), markdown)
    if README_MARKER.search(markdown):
        readme = (REPO / "README.md").read_text(encoding="utf-8")
        markdown = README_MARKER.sub(lambda marker: readme_section(marker.group(1), readme), markdown)
    return markdown


def on_page_markdown(markdown: str, **_: Any) -> str:
    """MkDocs event: render the markers of a page; a gap in the documentation fails the build."""
    from mkdocs.exceptions import PluginError

    try:
        return render(markdown)
    except Undocumented as exc:
        raise PluginError(str(exc)) from None
