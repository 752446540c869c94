"""litellm's bundled model list and prices, read as JSON without importing litellm.

Importing litellm costs seconds and well over 100 MiB; its package also ships the same data as one JSON file
(``model_prices_and_context_window_backup.json``). The web page's model lists, cost accounting and template
checks read that file, located through the package's import spec (which does not import it), once.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

__all__ = ["SERVED_MODES", "model_data", "models_of"]

log = logging.getLogger("gateway.model_catalog")

DATA_FILE = "model_prices_and_context_window_backup.json"
# litellm also lists image, audio, realtime and video models; the gateway serves none of those endpoints.
SERVED_MODES = frozenset({"chat", "completion", "responses", "embedding"})
# What the gateway reads of an entry; the file has ~30 fields per model, and kept whole they cost ~4 MiB.
KEPT_FIELDS = ("litellm_provider", "mode", "input_cost_per_token", "output_cost_per_token")


def _data_path() -> Path | None:
    """Where the installed litellm keeps its model list, or None when litellm is not installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / DATA_FILE


# The whole file parses to ~70,000 values; freed, their heap stays with the process (~4 MiB of RSS beyond the
# ~2 MiB kept). A child interpreter parses it and hands back only KEPT_FIELDS, a small document to parse here.
_SLIM = """
import sys, orjson
data = orjson.loads(open(sys.argv[1], "rb").read())
if not isinstance(data, dict):
    data = {}
data.pop("sample_spec", None)  # the file's own field documentation, not a model
kept = sys.argv[2].split(",")
sys.stdout.buffer.write(orjson.dumps({name: {k: entry[k] for k in kept if k in entry} if isinstance(entry, dict)
                                      else entry for name, entry in data.items()}))
"""


@lru_cache(maxsize=1)
def model_data() -> MappingProxyType[str, Any]:
    """Every model litellm knows → its entry (provider, mode, prices: KEPT_FIELDS); empty when the file cannot be
    read."""
    path = _data_path()
    data: Any = {}
    if path is not None:
        try:
            child = subprocess.run([sys.executable, "-I", "-c", _SLIM, str(path), ",".join(KEPT_FIELDS)],
                                   capture_output=True, check=True, timeout=60)
            data = orjson.loads(child.stdout)
        except (OSError, subprocess.SubprocessError, orjson.JSONDecodeError):
            log.warning("litellm's model list could not be read; model lists and costs will be empty")
    return MappingProxyType(_shared(data) if isinstance(data, dict) else {})


def _shared(data: dict[str, Any]) -> dict[str, Any]:
    """DATA with each repeated value as one object: ~4,000 entries name ~140 providers, a few modes and ~300
    prices, and the parse makes a copy per entry (~0.6 MiB of the ~1.9 MiB kept)."""
    seen: dict[tuple[type, object], object] = {}
    for entry in data.values():
        if isinstance(entry, dict):
            for key, value in entry.items():
                if isinstance(value, str | int | float):
                    entry[key] = seen.setdefault((type(value), value), value)
    return data


@lru_cache(maxsize=64)
def models_of(litellm_provider: str) -> frozenset[str]:
    """The chat/completion/embedding models litellm lists for a provider, without its routing prefix."""
    prefix = f"{litellm_provider}/"
    # litellm files OpenAI's completion-only models under "text-completion-openai".
    owners = {litellm_provider, f"text-completion-{litellm_provider}"}
    names = set()
    for name, entry in model_data().items():
        if not isinstance(entry, dict) or entry.get("litellm_provider") not in owners:
            continue
        mode = entry.get("mode")
        # "ft:" entries are price templates for fine-tunes, not models anyone can call.
        if (mode is None or mode in SERVED_MODES) and not name.startswith("ft:"):
            names.add(name.removeprefix(prefix))
    return frozenset(names)
