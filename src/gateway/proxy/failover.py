"""Whose failure an attempt's error is, when to fail over, and the cooldown of configurations that keep failing
(closed → open → half-open).

A configuration that fails `threshold` times in a row is skipped for `cooldown_s` (or the upstream's
Retry-After); afterwards one request at a time probes it (half-open) until one succeeds. Only the provider's
failures count: a request the upstream or the translation refused is the client's, and the gateway's own
failures (its translation worker, a key it cannot decrypt) say nothing about the configuration.
"""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass

from gateway.errors import GatewayError, UpstreamError

# Another key or provider may fix these; any other 4xx means the request itself is wrong.
FAILOVER_STATUSES = frozenset({401, 403, 408, 429})
MAX_RETRY_AFTER_S = 3600.0


def should_fail_over(status: int) -> bool:
    """True for upstream statuses that another configuration may answer better."""
    return status >= 500 or status in FAILOVER_STATUSES


class Blame(enum.Enum):
    """Whose failure an attempt's error is, and so what it does to the request and to the configuration."""

    CLIENT = "client"  # answered as is: no failover, and the configuration is fine
    PROVIDER = "provider"  # fails over, and counts toward the configuration's cooldown
    GATEWAY = "gateway"  # fails over (another configuration may not need what failed), counts toward nothing


def blame(error: GatewayError) -> Blame:
    """Whose failure an attempt's error is: the one rule the attempt loop, the cooldown and the metrics ask."""
    if isinstance(error, UpstreamError):
        return Blame.PROVIDER if should_fail_over(error.status) else Blame.CLIENT
    return Blame.CLIENT if error.status < 500 else Blame.GATEWAY


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form), capped; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


@dataclass(slots=True)
class Health:
    """Consecutive failures of one configuration and, once open, until when it is skipped."""

    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


class Cooldowns:
    """Per-process health of configurations; the hot path only reads a dict when all is well."""

    def __init__(self, *, threshold: int, cooldown_s: float) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._health: dict[uuid.UUID, Health] = {}

    def admit(self, configuration_id: uuid.UUID) -> bool:
        """Whether a request may try this configuration now; claims the half-open probe when due."""
        if not self._health:  # all is well: no hashing (a UUID's hash is a Python method)
            return True
        health = self._health.get(configuration_id)
        if health is None or health.failures < self.threshold:
            return True
        if health.probing or time.monotonic() < health.open_until:
            return False
        health.probing = True
        return True

    def retry_in(self, configuration_ids: list[uuid.UUID]) -> float:
        """Seconds until the first of these configurations may be tried again."""
        now = time.monotonic()
        waits = [h.open_until - now for i in configuration_ids if (h := self._health.get(i)) is not None]
        return max(0.0, min(waits, default=0.0))

    def succeeded(self, configuration_id: uuid.UUID) -> None:
        """A success closes the circuit."""
        if self._health and configuration_id in self._health:
            del self._health[configuration_id]

    def failed(self, configuration_id: uuid.UUID, retry_after_s: float | None = None) -> bool:
        """Count a failure; True when it (re)opens the cooldown."""
        health = self._health.setdefault(configuration_id, Health())
        health.failures += 1
        health.probing = False
        if health.failures < self.threshold:
            return False
        health.open_until = time.monotonic() + (retry_after_s if retry_after_s is not None else self.cooldown_s)
        return True

    def released(self, configuration_id: uuid.UUID) -> None:
        """The attempt ended with neither verdict (the client left): let another request probe."""
        health = self._health.get(configuration_id)
        if health is not None:
            health.probing = False
