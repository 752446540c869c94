"""The provider catalog: which upstreams exist, their defaults and wire format, and which models to offer.

The catalog ships as package data (``gateway/data/providers.toml``) so an installed gateway needs no config
file; ``ProviderCatalog.load(path)`` merges an operator's file (``LLM_GATEWAY_PROVIDERS_FILE``, example in
``config/providers.toml``) over it, table by table and field by field.

Model lists come from litellm's bundled JSON (``gateway.configurations.model_catalog``) without importing
litellm; litellm itself is imported only by ``ProviderCatalog.infer_provider()`` when a legacy model string has
no provider prefix: it takes seconds to import and has no place on the web page's or the OpenAI-compatible hot path.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from gateway.configurations.model_catalog import models_of

__all__ = ["CatalogError", "Provider", "ProviderCatalog"]

WIRE_OPENAI = "openai"
FALLBACK_PROVIDER = "openai"

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_STRINGS = ("name", "wire", "litellm_provider", "base_url")
_BOOLS = ("requires_base_url", "requires_api_key")
_LISTS = ("litellm_aliases", "bare_model_prefixes", "models")
_REQUIRED = ("name", "wire", "litellm_provider")


class CatalogError(ValueError):
    """The provider catalog file is malformed; the message names the provider and field."""


@dataclass(frozen=True)
class Provider:
    """One upstream provider as the catalog describes it."""

    id: str
    name: str
    wire: str
    litellm_provider: str
    base_url: str | None = None
    requires_base_url: bool = False
    requires_api_key: bool = True
    litellm_aliases: tuple[str, ...] = ()
    bare_model_prefixes: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    @property
    def is_openai_compatible(self) -> bool:
        """True when requests are forwarded as bytes rather than translated by litellm."""
        return self.wire == WIRE_OPENAI


def _read_tables(text: str, source: str) -> dict[str, dict[str, Any]]:
    """The [providers.<id>] tables of a catalog document."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{source}: invalid TOML: {exc}") from None
    unknown = set(document) - {"providers"}
    if unknown:
        raise CatalogError(f"{source}: unknown top-level keys {sorted(unknown)}; expected [providers.<id>] tables")
    tables = document.get("providers", {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise CatalogError(f"{source}: providers must be tables, [providers.<id>]")
    return tables


def _provider(provider_id: str, table: dict[str, Any], source: str) -> Provider:
    """Validate one merged table and build its Provider."""
    where = f"{source}: provider {provider_id!r}"
    if not _ID_RE.match(provider_id):
        raise CatalogError(f"{where}: id must be lowercase letters, digits, _ or -")
    unknown = set(table) - {*_STRINGS, *_BOOLS, *_LISTS}
    if unknown:
        raise CatalogError(f"{where}: unknown fields {sorted(unknown)}")
    missing = [name for name in _REQUIRED if name not in table]
    if missing:
        raise CatalogError(f"{where}: missing fields {missing}")
    for name in _STRINGS:
        if name in table and (not isinstance(table[name], str) or not table[name]):
            raise CatalogError(f"{where}: {name} must be a non-empty string")
    for name in _BOOLS:
        if name in table and not isinstance(table[name], bool):
            raise CatalogError(f"{where}: {name} must be true or false")
    for name in _LISTS:
        if name in table and not (isinstance(table[name], list) and all(isinstance(v, str) for v in table[name])):
            raise CatalogError(f"{where}: {name} must be a list of strings")
    if not table.get("requires_base_url", False) and "base_url" not in table:
        raise CatalogError(f"{where}: give a base_url or set requires_base_url = true")
    values: dict[str, Any] = {name: tuple(table[name]) if name in _LISTS else table[name] for name in table}
    return Provider(id=provider_id, **values)


def _litellm() -> ModuleType:
    """Import litellm on first use, offline and quiet."""
    # Unless told otherwise, litellm downloads its price map at import and sends telemetry.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    import litellm

    # Otherwise it prints a provider-list banner to stdout for every model it cannot place.
    litellm.suppress_debug_info = True
    return litellm


class ProviderCatalog:
    """The providers the gateway can call, in catalog order."""

    def __init__(self, providers: Iterable[Provider]) -> None:
        self._providers = {provider.id: provider for provider in providers}
        self._models: dict[str, tuple[str, ...]] = {}
        # Every name a model string may be prefixed with ("together/", "together_ai/") → catalog id.
        self._by_name: dict[str, str] = {}
        for provider in reversed(self._providers.values()):
            for name in (provider.litellm_provider, *provider.litellm_aliases, provider.id):
                self._by_name[name] = provider.id

    @classmethod
    def load(cls, path: Path | None = None) -> ProviderCatalog:
        """The shipped catalog, with the tables of the TOML file at path (if any) merged over it."""
        shipped = resources.files("gateway").joinpath("data/providers.toml").read_text(encoding="utf-8")
        tables = _read_tables(shipped, "gateway/data/providers.toml")
        source = "gateway/data/providers.toml"
        if path is not None:
            source = str(path)
            for provider_id, overrides in _read_tables(Path(path).read_text(encoding="utf-8"), source).items():
                tables[provider_id] = {**tables.get(provider_id, {}), **overrides}
        return cls(_provider(provider_id, table, source) for provider_id, table in tables.items())

    def get(self, provider_id: str) -> Provider | None:
        """The provider with this id, or None."""
        return self._providers.get(provider_id)

    def ids(self) -> list[str]:
        """Provider ids in catalog order."""
        return list(self._providers)

    def providers(self) -> list[Provider]:
        """All providers in catalog order."""
        return list(self._providers.values())

    def _require(self, provider_id: str) -> Provider:
        """The provider with this id; KeyError when the catalog has none."""
        provider = self._providers.get(provider_id)
        if provider is None:
            raise KeyError(f"unknown provider {provider_id!r}")
        return provider

    def is_openai_compatible(self, provider_id: str) -> bool:
        """True when the provider speaks the OpenAI wire format; KeyError for an unknown id."""
        return self._require(provider_id).is_openai_compatible

    def default_base_url(self, provider_id: str) -> str | None:
        """The provider's default base URL, None when a configuration must give one; KeyError if unknown."""
        return self._require(provider_id).base_url

    def models(self, provider_id: str) -> list[str]:
        """The catalog's models for a provider, then litellm's other known ones, sorted; KeyError if unknown."""
        provider = self._require(provider_id)
        cached = self._models.get(provider_id)
        if cached is None:
            known = models_of(provider.litellm_provider)
            extra = sorted(known.difference(provider.models))
            cached = self._models[provider_id] = (*dict.fromkeys(provider.models), *extra)
        return list(cached)

    def named(self, name: str) -> str | None:
        """The catalog id of a provider called `name` by the catalog or by litellm ("together_ai"), or None."""
        return self._by_name.get(name.lower())

    def infer_provider(self, model: str) -> str:
        """The catalog id a legacy model string belongs to, "openai" when nothing says otherwise."""
        head, slash, _ = model.partition("/")
        if slash and (named := self.named(head)) is not None:
            return named
        litellm = _litellm()
        try:
            litellm_name = litellm.get_llm_provider(model)[1]
        except litellm.BadRequestError:  # litellm's way of saying it cannot place the model
            litellm_name = None
        if litellm_name in self._by_name:
            return self._by_name[litellm_name]
        # litellm's own lookup misses models its price map files under a prefix ("deepseek/deepseek-chat").
        # Only hosted APIs: Azure deployments and local servers carry whatever model names their owner chose.
        for provider in self._providers.values():
            hosted = not provider.requires_base_url and provider.requires_api_key
            if hosted and model in self.models(provider.id):
                return provider.id
        for provider in self._providers.values():
            if model.lower().startswith(provider.bare_model_prefixes):
                return provider.id
        return FALLBACK_PROVIDER
