"""`llm-gateway templates check`: every template model must still be in litellm's model catalog.

The catalog is the JSON file litellm ships (gateway.configurations.model_catalog): importing litellm takes seconds
and is not needed to read a file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.configurations.model_catalog import ModelEntry, model_data
from gateway.configurations.providers import ProviderCatalog
from gateway.templates.catalog import TemplateCatalog


@dataclass(frozen=True)
class ModelReport:
    """What the check found: models litellm does not know, and providers it lists no model of at all."""

    unknown: list[str]
    unchecked_providers: list[str]


def check_models(templates: TemplateCatalog, providers: ProviderCatalog,
                 known: Mapping[str, ModelEntry]) -> ModelReport:
    """Check each template model against litellm's map (models named by an input are the user's choice)."""
    listed = {entry.litellm_provider for entry in known.values()}
    unknown: list[str] = []
    unchecked: dict[str, None] = {}
    for template in templates.items():
        for config in template.configurations:
            provider = providers.get(config.provider)
            if provider is None or template.input_for("model", config.provider) is not None:
                continue
            names = {provider.litellm_provider, *provider.litellm_aliases}
            if not names & listed:
                unchecked[config.provider] = None  # e.g. OpenRouter: litellm's map has none of its models
                continue
            bare = known.get(config.model)
            if f"{provider.litellm_provider}/{config.model}" in known or (
                    bare is not None and bare.litellm_provider in names):
                continue
            unknown.append(f"template {template.id!r} ({template.source}): configuration {config.name!r}: model "
                           f"{config.model!r} of provider {config.provider!r} is not in litellm's catalog")
    return ModelReport(unknown, list(unchecked))


def run_check(providers_file: Path | None, templates_file: Path | None) -> tuple[str, int]:
    """The command's output and exit status: 1 when a template model is unknown."""
    providers = ProviderCatalog.load(providers_file)
    templates = TemplateCatalog.load(providers, templates_file)
    report = check_models(templates, providers, model_data())
    lines = list(report.unknown)
    if report.unchecked_providers:
        lines.append(f"not checked (litellm lists no models of): {', '.join(report.unchecked_providers)}")
    models = sum(len(t.configurations) for t in templates.items())
    lines.append(f"{len(templates.items())} templates, {models} configurations: "
                 f"{len(report.unknown) or 'no'} unknown model{'s' if len(report.unknown) != 1 else ''}")
    return "\n".join(lines), 1 if report.unknown else 0
