"""The provider catalog: shipped data, operator overrides, the litellm model merge and legacy inference."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.configurations.providers import CatalogError, Provider, ProviderCatalog
from gateway.ssrf import UrlPolicy

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = [
    # (id, default base_url, openai wire, requires_base_url)
    ("openai", "https://api.openai.com/v1", True, False),
    ("openrouter", "https://openrouter.ai/api/v1", True, False),
    ("groq", "https://api.groq.com/openai/v1", True, False),
    ("mistral", "https://api.mistral.ai/v1", True, False),
    ("deepseek", "https://api.deepseek.com/v1", True, False),
    ("together", "https://api.together.xyz/v1", True, False),
    ("xai", "https://api.x.ai/v1", True, False),
    ("azure", None, True, True),
    ("ollama", "http://localhost:11434/v1", True, False),
    ("vllm", "http://localhost:8000/v1", True, False),
    ("custom", None, True, True),
    ("anthropic", "https://api.anthropic.com", False, False),
    ("gemini", "https://generativelanguage.googleapis.com/v1beta", False, False),
]


@pytest.fixture(scope="module")
def catalog() -> ProviderCatalog:
    return ProviderCatalog.load()


def test_ids_in_catalog_order(catalog: ProviderCatalog) -> None:
    assert catalog.ids() == [row[0] for row in EXPECTED]


@pytest.mark.parametrize(("provider_id", "base_url", "openai_wire", "requires_base_url"), EXPECTED)
def test_lookups(
    catalog: ProviderCatalog, provider_id: str, base_url: str | None, openai_wire: bool, requires_base_url: bool
) -> None:
    provider = catalog.get(provider_id)
    assert isinstance(provider, Provider) and provider.id == provider_id and provider.name
    assert catalog.default_base_url(provider_id) == base_url
    assert catalog.is_openai_compatible(provider_id) is openai_wire
    assert provider.requires_base_url is requires_base_url
    assert provider.litellm_provider
    if base_url is not None:
        # Local defaults are only valid where the operator allows private base URLs.
        UrlPolicy(allow_private=provider_id in {"ollama", "vllm"}).check_base_url(base_url)


def test_provider_is_frozen(catalog: ProviderCatalog) -> None:
    provider = catalog.get("openai")
    assert provider is not None
    with pytest.raises(AttributeError):
        provider.base_url = "https://evil.example"  # type: ignore[misc]


def test_unknown_id(catalog: ProviderCatalog) -> None:
    assert catalog.get("nope") is None
    for method in (catalog.default_base_url, catalog.is_openai_compatible, catalog.models):
        with pytest.raises(KeyError):
            method("nope")


@pytest.mark.parametrize("provider_id", [row[0] for row in EXPECTED])
def test_models_start_with_catalog_models(catalog: ProviderCatalog, provider_id: str) -> None:
    provider = catalog.get(provider_id)
    assert provider is not None
    models = catalog.models(provider_id)
    assert models[: len(provider.models)] == list(provider.models)
    assert len(models) == len(set(models))


@pytest.mark.parametrize(
    ("provider_id", "present", "absent"),
    [
        # litellm adds models the catalog does not list, without its routing prefix, chat and embeddings only.
        ("openai", ["gpt-4o", "gpt-4", "text-embedding-3-large"], ["dall-e-3", "whisper-1", "ft:babbage-002"]),
        ("anthropic", ["claude-sonnet-4-5", "claude-haiku-4-5"], []),
        ("groq", ["llama-3.3-70b-versatile", "llama-guard-3-8b"], ["groq/llama-guard-3-8b", "whisper-large-v3"]),
        ("mistral", ["mistral-large-latest", "codestral-2508"], ["mistral/codestral-2508"]),
        ("deepseek", ["deepseek-chat", "deepseek-reasoner"], []),
        ("custom", [], []),
    ],
)
def test_models_merge_litellm(
    catalog: ProviderCatalog, provider_id: str, present: list[str], absent: list[str]
) -> None:
    models = catalog.models(provider_id)
    for name in present:
        assert name in models
    for name in absent:
        assert name not in models
    assert not [name for name in models if "-x-" in name.split("/")[0]]  # no "1024-x-1024/..." image prices


def test_models_cached_and_copied(catalog: ProviderCatalog, monkeypatch: pytest.MonkeyPatch) -> None:
    first = catalog.models("openai")
    first.append("mutated")

    def no_second_merge(*args: object) -> frozenset[str]:
        raise AssertionError("models() merged litellm's list twice")

    monkeypatch.setattr("gateway.configurations.providers.models_of", no_second_merge)
    assert catalog.models("openai") == first[:-1]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("anthropic/claude-3-5-sonnet-20241022", "anthropic"),
        ("gemini/gemini-1.5-pro", "gemini"),
        ("openrouter/anthropic/claude-3.5-sonnet", "openrouter"),
        ("groq/llama3-8b-8192", "groq"),
        ("together_ai/meta-llama/Llama-3-70b", "together"),
        ("together/meta-llama/Llama-3-70b", "together"),
        ("ollama/llama3", "ollama"),
        ("ollama_chat/llama3", "ollama"),
        ("hosted_vllm/my-model", "vllm"),
        ("azure/my-deployment", "azure"),
        ("deepseek/deepseek-chat", "deepseek"),
        ("xai/grok-2", "xai"),
        ("mistral/mistral-large-latest", "mistral"),
        ("openai/gpt-4o", "openai"),
        ("gpt-4o", "openai"),
        ("gpt-4o-mini", "openai"),
        ("gpt-3.5-turbo-instruct", "openai"),  # litellm says text-completion-openai
        ("o1-mini", "openai"),  # litellm only knows it under azure/: deployments do not count
        ("claude-sonnet-4-5", "anthropic"),
        ("claude-3-5-sonnet-20240620", "anthropic"),  # unknown to litellm: the claude- family decides
        ("gemini-1.5-pro", "gemini"),
        ("mistral-large-latest", "mistral"),
        ("deepseek-chat", "deepseek"),
        ("grok-2", "xai"),
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "together"),
        ("bedrock/anthropic.claude-v2", "openai"),  # not a catalog provider
        ("some-unknown-model", "openai"),
        ("", "openai"),
    ],
)
def test_infer_provider(catalog: ProviderCatalog, model: str, expected: str) -> None:
    assert catalog.infer_provider(model) == expected




def test_override_file_merges_over_shipped(tmp_path: Path) -> None:
    path = tmp_path / "providers.toml"
    path.write_text(
        textwrap.dedent(
            """
            [providers.openai]
            base_url = "https://egress.example.com/openai/v1"

            [providers.fireworks]
            name = "Fireworks AI"
            base_url = "https://api.fireworks.ai/inference/v1"
            wire = "openai"
            litellm_provider = "fireworks_ai"
            models = ["accounts/fireworks/models/llama-v3p3-70b-instruct"]
            """
        )
    )
    catalog = ProviderCatalog.load(path)
    assert catalog.default_base_url("openai") == "https://egress.example.com/openai/v1"
    openai = catalog.get("openai")
    assert openai is not None and openai.models and openai.name == "OpenAI"
    assert catalog.ids()[-1] == "fireworks"
    assert catalog.is_openai_compatible("fireworks")
    assert catalog.infer_provider("fireworks_ai/some-model") == "fireworks"


def test_shipped_example_override_loads() -> None:
    # config/providers.toml is all comments: pointing the gateway at it changes nothing.
    assert ProviderCatalog.load(ROOT / "config" / "providers.toml").providers() == ProviderCatalog.load().providers()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[providers.openai]\nbase_url = 5\n", "base_url must be a non-empty string"),
        ("[providers.openai]\nrequires_api_key = 'no'\n", "requires_api_key must be true or false"),
        ("[providers.openai]\nmodels = 'gpt-4o'\n", "models must be a list of strings"),
        ("[providers.openai]\nbase_ulr = 'https://x.example'\n", "unknown fields ['base_ulr']"),
        ("[providers.new]\nname = 'New'\nwire = 'openai'\n", "missing fields ['litellm_provider']"),
        ("[providers.new]\nname = 'New'\nwire = 'openai'\nlitellm_provider = 'openai'\n", "requires_base_url"),
        ("[providers.Bad_Id]\nname = 'x'\n", "id must be lowercase"),
        ("[provider.openai]\nname = 'x'\n", "unknown top-level keys"),
        ("[providers\n", "invalid TOML"),
    ],
)
def test_malformed_override_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "providers.toml"
    path.write_text(text)
    with pytest.raises(CatalogError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ProviderCatalog.load(path)


LAZY_IMPORT_SCRIPT = """
import os, sys
os.environ.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)
os.environ.pop("LITELLM_TELEMETRY", None)
from gateway.configurations.providers import ProviderCatalog
catalog = ProviderCatalog.load()
catalog.get("openai"); catalog.ids(); catalog.is_openai_compatible("anthropic"); catalog.default_base_url("groq")
assert catalog.infer_provider("anthropic/claude-3-opus") == "anthropic"
assert "gpt-4o" in catalog.models("openai") and "claude-sonnet-4-5" in catalog.models("anthropic")
assert "litellm" not in sys.modules, "model lists imported litellm"
assert catalog.infer_provider("gpt-4o") == "openai"  # a bare legacy name asks litellm itself
assert "litellm" in sys.modules
assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
assert os.environ["LITELLM_TELEMETRY"] == "False"
print("ok")
"""


def test_litellm_imported_lazily_and_offline() -> None:
    # A fresh interpreter: other tests in this process have imported litellm already.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", LAZY_IMPORT_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
