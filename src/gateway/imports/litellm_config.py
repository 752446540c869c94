"""A LiteLLM proxy `config.yaml` turned into one user's configurations.

Each `model_list` entry becomes a configuration named after its `model_name`: the provider and model from
`litellm_params.model` (`provider/model`), the base URL from `api_base`, the key from `api_key` (a literal, or
`os.environ/NAME` read from this process' environment now). An entry whose key is missing is created inactive
(`needs_key`, with the reason); `router_settings.fallbacks` (or `litellm_settings.fallbacks`) become fallbacks
where both ends were imported. Whatever has no equivalent is listed in `not_mapped`; a key is never in a report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.configurations.backup import ExportDocument, ExportedConfiguration, ImportReport
from gateway.configurations.crud import check_api_key
from gateway.configurations.providers import ProviderCatalog
from gateway.errors import Unprocessable
from gateway.templates.apply import NO_KEY

ENV_PREFIX = "os.environ/"
# litellm_params the gateway has an answer for; any other one of an entry is reported as not mapped.
MAPPED_PARAMS = frozenset({"model", "api_key", "api_base"})


class LiteLLMParams(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    api_key: str | None = None
    api_base: str | None = None


class Deployment(BaseModel):
    model_config = ConfigDict(extra="allow")

    model_name: str = Field(min_length=1)
    litellm_params: LiteLLMParams


class FallbackSettings(BaseModel):
    model_config = ConfigDict(extra="allow")

    fallbacks: list[dict[str, list[str]]] = Field(default_factory=list)


class LiteLLMConfig(BaseModel):
    """The parts of LiteLLM's proxy config this import reads; the rest is ignored (and reported)."""

    model_config = ConfigDict(extra="allow")

    model_list: list[Deployment] = Field(min_length=1)
    router_settings: FallbackSettings | None = None
    litellm_settings: FallbackSettings | None = None


class Note(BaseModel):
    """Why something was not imported as it stood: the entry's name and a reason, never a value."""

    name: str
    reason: str


class LiteLLMImportReport(ImportReport):
    """The import's report, plus what LiteLLM's file had that the gateway could not take."""

    user: str
    not_mapped: list[Note] = Field(default_factory=list)
    missing_keys: list[Note] = Field(default_factory=list)


class Plan(BaseModel):
    """What the file maps to: an export document without keys, the keys by name, and the notes."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    document: ExportDocument
    keys: dict[str, str] = Field(repr=False)
    not_mapped: list[Note]
    missing_keys: list[Note]


def parse(data: Any) -> LiteLLMConfig:
    """The YAML document validated; a mistake is one line naming where, never the value found there."""
    try:
        return LiteLLMConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise Unprocessable(f"not a LiteLLM proxy config: {where}: {first['msg']}", param=where) from None


def _resolved(value: str | None, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(value, why it is missing): `os.environ/NAME` read from `environ`, a literal as it is."""
    if value is None or value == "":
        return None, "no api_key in litellm_params"
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX):]
        found = environ.get(name)
        return (found, None) if found else (None, f"environment variable {name} is not set")
    return value, None


def _key(params: LiteLLMParams, needs_key: bool, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    key, missing = _resolved(params.api_key, environ)
    if key is None:
        return (NO_KEY, None) if not needs_key and params.api_key is None else (None, missing)
    try:
        check_api_key(key)
    except Unprocessable:
        return None, "its api_key is a placeholder or not a valid key"
    return key, None


def plan(config: LiteLLMConfig, catalog: ProviderCatalog, environ: Mapping[str, str]) -> Plan:
    """Map the config onto configurations, without touching the database."""
    entries: dict[str, ExportedConfiguration] = {}
    keys: dict[str, str] = {}
    not_mapped: list[Note] = []
    missing: list[Note] = []
    for deployment in config.model_list:
        name, params = deployment.model_name, deployment.litellm_params
        if name in entries:
            not_mapped.append(Note(name=name, reason="another deployment of the same model_name (LiteLLM balances "
                                   "load between them): only the first is imported"))
            continue
        head, slash, model = params.model.partition("/")
        provider = catalog.named(head) if slash else None
        if provider is None:
            not_mapped.append(Note(name=name, reason=f"litellm_params.model {params.model!r} does not start with "
                                   "the name of a provider the gateway knows (provider/model)"))
            continue
        base_url, base_missing = _resolved(params.api_base, environ) if params.api_base else (None, None)
        if base_missing:
            not_mapped.append(Note(name=name, reason=f"api_base: {base_missing}"))
            continue
        ignored = sorted(set(params.model_dump(exclude_none=True)) - MAPPED_PARAMS)
        if ignored:
            not_mapped.append(Note(name=name, reason="litellm_params ignored: " + ", ".join(ignored)))
        entry = catalog.get(provider)
        key, why = _key(params, entry is None or entry.requires_api_key, environ)
        if key is None:
            missing.append(Note(name=name, reason=f"created inactive: {why}; set its key to use it"))
        else:
            keys[name] = key
        try:
            entries[name] = ExportedConfiguration(name=name, provider=provider, model=model, base_url=base_url,
                                                  is_active=key is not None)
        except ValidationError:
            not_mapped.append(Note(name=name, reason="not a valid configuration: a name of 1-100 and a model of "
                                   "1-200 printable characters"))
            keys.pop(name, None)
            missing[:] = [note for note in missing if note.name != name]
            continue
    for section in (config.router_settings, config.litellm_settings):
        for rule in section.fallbacks if section is not None else ():
            for name, targets in rule.items():
                _fallbacks(entries, name, targets, not_mapped)
    document = ExportDocument(configurations=list(entries.values()))
    return Plan(document=document, keys=keys, not_mapped=not_mapped, missing_keys=missing)


def _fallbacks(entries: dict[str, ExportedConfiguration], name: str, targets: list[str],
               not_mapped: list[Note]) -> None:
    if name not in entries:
        not_mapped.append(Note(name=name, reason="fallbacks of a model_name that was not imported"))
        return
    for target in targets:
        if target in entries and target != name:
            if target not in entries[name].fallbacks:
                entries[name].fallbacks.append(target)
        else:
            not_mapped.append(Note(name=name, reason=f"fallback {target!r} is not an imported model_name"))
