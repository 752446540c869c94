"""Which upstream answer headers a client sees, with the configuration's key scrubbed out of every value."""

from __future__ import annotations

import random

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.crypto.masking import scrub
from gateway.proxy.forward import is_relayed, relayed_headers

KEY = "sk-relay-" + "k" * 24
NAMES = ["Content-Type", "content-type", "X-Request-Id", "Server", "Date", "Set-Cookie", "x-ratelimit-limit-requests",
         "X-RateLimit-Remaining-Tokens", "anthropic-ratelimit-requests-reset", "Retry-After", "retry-after-ms",
         "Authorization", "openai-processing-ms", "Via", "request-id", "X-Should-Retry", "ratelimit-policy"]
VALUES = ["application/json", "1", "req_123", "nginx", KEY, f"Bearer {KEY}", f"{KEY[:10]}", f"{KEY}{KEY}", "",
          "sk-relay-", "a\tb"]


@pytest.mark.parametrize("seed", range(200))
@pytest.mark.parametrize("api_key", [KEY, ""])
def test_relayed_names_carry_their_last_value_without_the_key(seed: int, api_key: str) -> None:
    rng = random.Random(seed)
    upstream = CIMultiDictProxy(CIMultiDict((rng.choice(NAMES), rng.choice(VALUES)) for _ in range(rng.randrange(12))))
    got = relayed_headers(upstream, api_key)
    assert {name.lower() for name in got} == {name.lower() for name in upstream if is_relayed(name)}
    assert all(is_relayed(name) for name in got)
    for name, value in got.items():
        last = [v for n, v in upstream.items() if n == name][-1]
        assert value == (scrub(last, api_key) if api_key else last)
        if api_key:
            assert api_key not in value
    assert "Authorization" not in got and "Set-Cookie" not in got and "Server" not in got


def test_a_key_straddling_two_values_is_left_as_the_values_are() -> None:
    upstream = CIMultiDictProxy(CIMultiDict([("x-request-id", KEY[:12]), ("openai-version", KEY[12:])]))
    assert relayed_headers(upstream, KEY) == {"x-request-id": KEY[:12], "openai-version": KEY[12:]}
