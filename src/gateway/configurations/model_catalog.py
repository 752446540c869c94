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
from typing import Any, NamedTuple

import orjson

__all__ = ["SERVED_MODES", "ModelEntry", "model_data", "models_of"]

log = logging.getLogger("gateway.model_catalog")

DATA_FILE = "model_prices_and_context_window_backup.json"
# litellm also lists image, audio, realtime and video models; the gateway serves none of those endpoints.
SERVED_MODES = frozenset({"chat", "completion", "responses", "embedding"})


class ModelEntry(NamedTuple):
    """What the gateway reads of a model's entry; the file has ~30 fields per model, and kept whole they cost
    ~4 MiB. A tuple: 72 bytes where a dict of the same four costs 184, over ~4,000 models."""

    litellm_provider: str | None
    mode: str | None
    input_cost_per_token: float | None
    output_cost_per_token: float | None


KEPT_FIELDS = ModelEntry._fields


def _data_path() -> Path | None:
    """Where the installed litellm keeps its model list, or None when litellm is not installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / DATA_FILE


# The whole file parses to ~70,000 values; freed, their heap stays with the process (~4 MiB of RSS beyond the
# ~2 MiB kept). A child interpreter parses it and hands back one row of KEPT_FIELDS per model, a small document.
_SLIM = """
import sys, orjson
data = orjson.loads(open(sys.argv[1], "rb").read())
if not isinstance(data, dict):
    data = {}
data.pop("sample_spec", None)  # the file's own field documentation, not a model
kept = sys.argv[2].split(",")
sys.stdout.buffer.write(orjson.dumps({name: [entry.get(k) for k in kept] for name, entry in data.items()
                                      if isinstance(entry, dict)}))
"""


@lru_cache(maxsize=1)
def model_data() -> MappingProxyType[str, ModelEntry]:
    """Every model litellm knows → what the gateway reads of it; empty when the file cannot be read."""
    path = _data_path()
    data: Any = {}
    if path is not None:
        try:
            child = subprocess.run([sys.executable, "-I", "-c", _SLIM, str(path), ",".join(KEPT_FIELDS)],
                                   capture_output=True, check=True, timeout=60)
            data = orjson.loads(child.stdout)
        except (OSError, subprocess.SubprocessError, orjson.JSONDecodeError):
            log.warning("litellm's model list could not be read; model lists and costs will be empty")
    return MappingProxyType(_entries(data) if isinstance(data, dict) else {})


def _entries(data: dict[str, Any]) -> dict[str, ModelEntry]:
    """The child's rows as entries, each repeated value one object: ~4,000 models name ~140 providers, a few
    modes and ~300 prices, and a parse makes a copy per model. A value of the wrong type reads as absent."""
    seen: dict[tuple[type, object], Any] = {}

    def shared(value: object, kind: type | tuple[type, ...]) -> Any:
        if not isinstance(value, kind) or isinstance(value, bool):
            return None
        return seen.setdefault((type(value), value), value)

    return {name: ModelEntry(shared(row[0], str), shared(row[1], str), shared(row[2], (int, float)),
                             shared(row[3], (int, float)))
            for name, row in data.items() if isinstance(row, list) and len(row) == len(KEPT_FIELDS)}


@lru_cache(maxsize=64)
def models_of(litellm_provider: str) -> frozenset[str]:
    """The chat/completion/embedding models litellm lists for a provider, without its routing prefix."""
    prefix = f"{litellm_provider}/"
    # litellm files OpenAI's completion-only models under "text-completion-openai".
    owners = {litellm_provider, f"text-completion-{litellm_provider}"}
    names = set()
    for name, entry in model_data().items():
        if entry.litellm_provider not in owners:
            continue
        mode = entry.mode
        # "ft:" entries are price templates for fine-tunes, not models anyone can call.
        if (mode is None or mode in SERVED_MODES) and not name.startswith("ft:"):
            names.add(name.removeprefix(prefix))
    return frozenset(names)
