"""Token counts read from an answer: the fast path for two plain counts gives what the general rule gives."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from gateway.proxy.relay import MAX_TOKENS, usage_of

VALUES: list[Any] = [0, 1, 17, MAX_TOKENS, MAX_TOKENS + 1, 2**70, -1, -(2**70), True, False, 3.0, 3.7, -2.5,
                     1e30, math.inf, -math.inf, math.nan, None, "12", [], {}]


def reference(usage: dict[str, Any]) -> tuple[int, int]:
    """The rule: the OpenAI field, else the Responses one, else 0; counts clamped to [0, MAX_TOKENS], floats
    truncated, non-finite and non-numbers 0."""
    def tokens(value: Any) -> int:
        if isinstance(value, float):
            return int(min(max(value, 0.0), MAX_TOKENS)) if math.isfinite(value) else 0
        return min(max(value, 0), MAX_TOKENS) if isinstance(value, int) else 0
    return (tokens(usage.get("prompt_tokens", usage.get("input_tokens", 0))),
            tokens(usage.get("completion_tokens", usage.get("output_tokens", 0))))


@pytest.mark.parametrize(("prompt", "completion"), list(itertools.product(VALUES, repeat=2)))
def test_chat_counts_follow_the_rule(prompt: Any, completion: Any) -> None:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 3}
    got = usage_of({"id": "x", "usage": usage})
    assert got == reference(usage)


@pytest.mark.parametrize("usage", [
    {"input_tokens": 5, "output_tokens": 7},
    {"prompt_tokens": 5, "output_tokens": 7},
    {"input_tokens": 5, "completion_tokens": 7},
    {"prompt_tokens": None, "input_tokens": 5, "completion_tokens": 7},
    {"prompt_tokens": 4, "input_tokens": 5, "completion_tokens": 7, "output_tokens": 8},
    {},
])
def test_other_shapes_follow_the_rule(usage: dict[str, Any]) -> None:
    assert usage_of({"usage": usage}) == reference(usage)
    assert usage_of({"type": "response.completed", "response": {"usage": usage}}) == reference(usage)


def test_no_usage_is_none() -> None:
    assert usage_of({"id": "x"}) is None
    assert usage_of({"usage": None}) is None
    assert usage_of([1, 2]) is None
