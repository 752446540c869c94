"""Prometheus metrics of the proxy, in a registry of the app's own (tests build many apps)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from gateway.web.appkeys import METRICS, USAGE

ATTEMPT_OUTCOMES = ("ok", "failed", "client_error", "key_error")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# The only endpoint label values: a client chooses the path after /v1/, and each new label value is a new time
# series kept forever, so any other path is counted as "other".
KNOWN_ENDPOINTS = frozenset({
    "/chat/completions", "/completions", "/embeddings", "/responses", "/moderations", "/images/generations",
    "/images/edits", "/images/variations", "/audio/speech", "/audio/transcriptions", "/audio/translations",
    "/rerank",
})
OTHER_ENDPOINT = "other"


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
        self.usage_dropped = Counter("llm_gateway_usage_dropped", "Usage records the database refused, dropped",
                                     registry=self.registry)
        self.task_crashes = Counter("llm_gateway_background_task_crashes",
                                    "Background tasks that crashed and were restarted", ["task"],
                                    registry=self.registry)

        self.attempt = {outcome: self.attempts.labels(outcome) for outcome in ATTEMPT_OUTCOMES}
        # Labelled children by (endpoint, status): labels() takes a lock and builds a key on every call.
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe_all(self, finished: list[tuple[str, int, float]]) -> None:
        """Count finished requests, given as (path, status, latency_s): counters once per label set."""
        counts: dict[tuple[str, int], int] = {}
        children = self._children
        for path, status, latency_s in finished:
            key = (path if path in KNOWN_ENDPOINTS else OTHER_ENDPOINT, status)
            pair = children.get(key)
            if pair is None:
                pair = children[key] = (self.requests.labels(key[0], str(status)), self.latency.labels(key[0]))
            pair[1].observe(latency_s)
            counts[key] = counts.get(key, 0) + 1
        for key, count in counts.items():
            children[key][0].inc(count)


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics in Prometheus' text format, the requests finished since the last flush included."""
    request.config_dict[USAGE].settle()
    body = generate_latest(request.config_dict[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
