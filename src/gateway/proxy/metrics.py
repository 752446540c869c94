"""Prometheus metrics of the proxy, in a registry of the app's own (tests build many apps)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from gateway.appkeys import METRICS

ATTEMPT_OUTCOMES = ("ok", "failed", "client_error", "key_error")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ProxyMetrics:
    """Requests by status, latency, attempts, failovers and cooldowns."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("llm_gateway_requests", "Proxied requests by endpoint and final status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("llm_gateway_request_latency_seconds", "Time from request to last byte",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.attempts = Counter("llm_gateway_upstream_attempts", "Upstream attempts by outcome",
                                ["outcome"], registry=self.registry)
        self.failovers = Counter("llm_gateway_failovers", "Requests passed on to a fallback configuration",
                                 registry=self.registry)
        self.cooldowns = Counter("llm_gateway_cooldowns", "Times a configuration entered its cooldown",
                                 registry=self.registry)

        self.attempt = {outcome: self.attempts.labels(outcome) for outcome in ATTEMPT_OUTCOMES}
        # Labelled children by (endpoint, status): labels() takes a lock and builds a key on every call.
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe(self, endpoint: str, status: int, latency_s: float) -> None:
        """Count one finished request."""
        children = self._children.get((endpoint, status))
        if children is None:
            children = (self.requests.labels(endpoint, str(status)), self.latency.labels(endpoint))
            self._children[(endpoint, status)] = children
        children[0].inc()
        children[1].observe(latency_s)


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics in Prometheus' text format."""
    body = generate_latest(request.config_dict[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
