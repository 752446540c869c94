"""The per-user sliding window: exact counts, a window that slides rather than resets, batches, isolation."""

from __future__ import annotations

import pytest

from gateway.errors import RateLimited
from gateway.web.ratelimit import SlidingWindowLimiter


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_the_limit_then_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(limit=3, window_s=60, clock=clock)
    for _ in range(3):
        assert limiter.acquire("u") is None
        clock.now += 10
    assert limiter.acquire("u") == pytest.approx(30)  # the first event leaves the window at 1060
    assert limiter.remaining("u") == 0


def test_the_window_slides() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(limit=2, window_s=60, clock=clock)
    assert limiter.acquire("u") is None
    clock.now += 30
    assert limiter.acquire("u") is None
    clock.now += 30.5  # the first event has left the window, the second has not
    assert limiter.acquire("u") is None
    assert limiter.acquire("u") is not None


def test_a_batch_takes_all_or_nothing() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(limit=5, window_s=60, clock=clock)
    assert limiter.acquire("u", 3) is None
    assert limiter.acquire("u", 3) is not None
    assert limiter.remaining("u") == 2
    assert limiter.acquire("u", 2) is None
    assert limiter.acquire("u", 6) == 60  # more than the limit can ever allow


def test_users_are_independent() -> None:
    limiter = SlidingWindowLimiter(limit=1, window_s=60, clock=Clock())
    assert limiter.acquire("a") is None
    assert limiter.acquire("b") is None
    assert limiter.acquire("a") is not None


def test_require_raises_429_with_retry_after() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(limit=1, window_s=60, clock=clock)
    limiter.require("u", what="configuration tests")
    clock.now += 20.5
    with pytest.raises(RateLimited) as caught:
        limiter.require("u", what="configuration tests")
    assert caught.value.status == 429
    assert caught.value.headers == {"Retry-After": "40"}
    assert "configuration tests" in caught.value.message and "40s" in caught.value.message
