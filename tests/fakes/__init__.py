"""Fake upstream LLM providers: real aiohttp servers speaking OpenAI's and Anthropic's wire formats."""

from __future__ import annotations

import importlib
from typing import Any

# Lazy re-exports: importing the package eagerly would make `python -m tests.fakes.openai_upstream` warn
# (runpy) that the module it is about to run as __main__ was already imported.
_EXPORTS = {
    "DEFAULT_OPENAI_KEY": "openai_upstream",
    "Behaviour": "openai_upstream",
    "FakeOpenAI": "openai_upstream",
    "FakeUpstream": "openai_upstream",
    "RequestRecord": "openai_upstream",
    "start_openai_upstream": "openai_upstream",
    "DEFAULT_ANTHROPIC_KEY": "anthropic_upstream",
    "FakeAnthropic": "anthropic_upstream",
    "start_anthropic_upstream": "anthropic_upstream",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the submodule that defines name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
