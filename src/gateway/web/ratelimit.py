"""Per-key sliding-window limits (configuration tests: every test costs the user money).

In memory, per process: with N gateway processes a user may run up to N times the limit. Good enough for a
guard against runaway clicking and scripts; not a billing control.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable

from gateway.errors import RateLimited

SWEEP_ABOVE = 10_000  # keys kept before idle ones are dropped


class SlidingWindowLimiter:
    """At most `limit` events per key in any `window_s` seconds."""

    def __init__(self, *, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._events: dict[Hashable, deque[float]] = {}

    def _recent(self, key: Hashable, now: float) -> deque[float]:
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window_s:
            events.popleft()
        return events

    def remaining(self, key: Hashable) -> int:
        """Events still allowed now."""
        return max(0, self.limit - len(self._recent(key, self._clock())))

    def acquire(self, key: Hashable, count: int = 1) -> float | None:
        """Take `count` events; None when allowed, else the seconds until they would be (nothing taken)."""
        now = self._clock()
        events = self._recent(key, now)
        if count > self.limit:
            return self.window_s
        excess = len(events) + count - self.limit
        if excess > 0:
            return events[excess - 1] + self.window_s - now
        events.extend([now] * count)
        if len(self._events) > SWEEP_ABOVE:
            self._sweep(now)
        return None

    def require(self, key: Hashable, count: int = 1, *, what: str = "requests") -> None:
        """Take `count` events or raise RateLimited (429 with Retry-After)."""
        wait = self.acquire(key, count)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise RateLimited(
                f"Too many {what}: at most {self.limit} per {self.window_s:g} s; try again in {seconds}s",
                headers={"Retry-After": str(seconds)},
            )

    def _sweep(self, now: float) -> None:
        for key in [k for k, v in self._events.items() if not v or v[-1] <= now - self.window_s]:
            del self._events[key]
