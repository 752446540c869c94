"""Template documents: the pydantic models of the TOML format, and loading the built-ins plus the operator's file
into one catalog, every problem reported on one line naming the file, the template and the field."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from gateway.configurations.providers import ProviderCatalog

BUILTIN_SOURCE = "gateway/templates/builtin.toml"

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]
Short = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]


class TemplateError(ValueError):
    """A template document is malformed; the message is one line naming the file, template and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateInput(_Strict):
    """One value the user supplies: a provider's key, a server's base URL, or a deployment/model name."""

    id: Slug
    kind: Literal["api_key", "base_url", "model"]
    provider: Slug
    label: Short
    required: bool = True


class TemplateConfiguration(_Strict):
    """One configuration the template creates; inputs of the same provider fill its key, URL and model."""

    name: Short
    provider: Slug
    model: Short
    base_url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None


class Template(_Strict):
    """A ready-made setup: its configurations in failover order and the inputs they need."""

    id: Slug
    title: Short
    description: Text
    source: Literal["builtin", "operator"] = "builtin"
    configurations: list[TemplateConfiguration] = Field(min_length=1, max_length=10)
    inputs: list[TemplateInput] = Field(default_factory=list, max_length=30)

    def input_for(self, kind: str, provider: str) -> TemplateInput | None:
        """The input of this kind that serves configurations of this provider, if any."""
        return next((i for i in self.inputs if i.kind == kind and i.provider == provider), None)

    def providers(self) -> list[str]:
        """Provider ids in the order the configurations use them."""
        return list(dict.fromkeys(c.provider for c in self.configurations))


class _Document(_Strict):
    templates: list[dict[str, object]] = Field(default_factory=list)


def _where(source: str, raw: dict[str, object], index: int) -> str:
    name = raw.get("id") if isinstance(raw.get("id"), str) else f"#{index + 1}"
    return f"{source}: template {name!r}"


def _field(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "template"


def _check_rules(template: Template, catalog: ProviderCatalog) -> tuple[str, str] | None:
    """Rules across fields: known providers, one input per kind and provider, every key and URL provided for.
    Returns (field, problem) or None."""
    for n, config in enumerate(template.configurations):
        if catalog.get(config.provider) is None:
            return f"configurations[{n}].provider", f"unknown provider {config.provider!r}"
    names = [c.name for c in template.configurations]
    if len(set(names)) != len(names):
        return "configurations", "two configurations have the same name"
    used = set(template.providers())
    seen: set[tuple[str, str]] = set()
    for n, item in enumerate(template.inputs):
        if item.provider not in used:
            return f"inputs[{n}].provider", f"no configuration of this template uses provider {item.provider!r}"
        if (item.kind, item.provider) in seen or [i.id for i in template.inputs].count(item.id) > 1:
            return f"inputs[{n}]", "a duplicate: one input per id, and per kind and provider"
        seen.add((item.kind, item.provider))
    for provider_id in template.providers():
        entry = catalog.get(provider_id)
        assert entry is not None
        key = template.input_for("api_key", provider_id)
        if key is None:
            return "inputs", f"no api_key input for provider {provider_id!r}"
        if entry.requires_api_key and not key.required:
            return f"inputs[{template.inputs.index(key)}].required", f"provider {provider_id!r} needs a key"
        url = template.input_for("base_url", provider_id)
        lacking = entry.requires_base_url and any(c.base_url is None for c in template.configurations
                                                  if c.provider == provider_id)
        if lacking and (url is None or not url.required):
            return "inputs", f"provider {provider_id!r} needs a base URL: add a required base_url input"
    return None


def parse_templates(text: str, *, source: str, origin: str, catalog: ProviderCatalog) -> list[Template]:
    """Validate a TOML document of [[templates]]; TemplateError (one line) on the first problem."""
    try:
        document = _Document.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{source}: invalid TOML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise TemplateError(f"{source}: field {_field(first['loc'])!r}: {first['msg']}") from None
    templates: list[Template] = []
    for index, raw in enumerate(document.templates):
        where = _where(source, raw, index)
        if "source" in raw:
            raise TemplateError(f"{where}: field 'source': set by the gateway, not by the file")
        try:
            template = Template.model_validate({**raw, "source": origin})
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            raise TemplateError(f"{where}: field {_field(first['loc'])!r}: {first['msg']}") from None
        problem = _check_rules(template, catalog)
        if problem is not None:
            raise TemplateError(f"{where}: field {problem[0]!r}: {problem[1]}")
        if any(t.id == template.id for t in templates):
            raise TemplateError(f"{where}: field 'id': another template in this file has the same id")
        templates.append(template)
    return templates


class TemplateCatalog:
    """The built-in templates, then the operator's, by id."""

    def __init__(self, templates: Iterable[Template]) -> None:
        self._templates = {t.id: t for t in templates}

    @classmethod
    def load(cls, catalog: ProviderCatalog, path: Path | None = None) -> TemplateCatalog:
        """The shipped templates, plus those of the operator's file at `path` (validated; ids must be new)."""
        shipped = resources.files("gateway.templates").joinpath("builtin.toml").read_text(encoding="utf-8")
        templates = parse_templates(shipped, source=BUILTIN_SOURCE, origin="builtin", catalog=catalog)
        if path is not None:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise TemplateError(f"{path}: cannot read the templates file: {exc.__class__.__name__}") from None
            builtin_ids = {t.id for t in templates}
            for template in parse_templates(text, source=str(path), origin="operator", catalog=catalog):
                if template.id in builtin_ids:
                    raise TemplateError(f"{path}: template {template.id!r}: field 'id': a built-in template "
                                        "has this id; choose another")
                templates.append(template)
        return cls(templates)

    def items(self) -> list[Template]:
        """Every template: built-ins first, in file order."""
        return list(self._templates.values())

    def get(self, template_id: str) -> Template | None:
        """The template with this id, or None."""
        return self._templates.get(template_id)
