"""Prometheus metrics of the proxy, in a registry of the app's own (tests build many apps)."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from itertools import accumulate
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gateway.web.appkeys import METRICS, USAGE

ATTEMPT_OUTCOMES = ("ok", "failed", "client_error", "key_error", "gateway_error")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# The only endpoint label values: a client chooses the path after /v1/, and each new label value is a new time
# series kept forever, so any other path is counted as "other".
KNOWN_ENDPOINTS = frozenset({
    "/chat/completions", "/completions", "/embeddings", "/responses", "/moderations", "/images/generations",
    "/images/edits", "/images/variations", "/audio/speech", "/audio/transcriptions", "/audio/translations",
    "/rerank",
})
OTHER_ENDPOINT = "other"


class Histograms(Collector):
    """Histograms by label values, counted in plain numbers and exposed by prometheus_client as histogram
    families (the same _bucket, _count and _sum series). For observations made on every request: a Histogram
    child's observe() takes a lock for its sum and again for a bucket, several thousand instructions; this is one
    bisect and two additions. Single-threaded: the event loop observes and serves the scrape."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.bounds = tuple(float(bound) for bound in buckets)
        # The `le` labels as prometheus_client's Histogram writes them (the function is untyped there).
        self._le = [str(floatToGoString(bound)) for bound in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self._children: dict[tuple[str, ...], list[float]] = {}
        self._bucket = partial(bisect_left, self.bounds)  # a value's bucket: the first whose bound is >= it
        registry.register(self)

    def child(self, *labels: str) -> list[float]:
        """The counts of one label set: one per bucket, then +Inf, then the sum (observe() writes them)."""
        counts = self._children.get(labels)
        if counts is None:
            counts = self._children[labels] = [0] * (len(self.bounds) + 2)
        return counts

    def observe(self, counts: list[float], value: float, times: int = 1) -> None:
        """Count `times` observations of `value` in a child's counts."""
        counts[self._bucket(value)] += times
        counts[-1] += value * times

    def observe_many(self, counts: list[float], values: Sequence[float]) -> None:
        """Count one observation of each value in a child's counts: the buckets tallied in C, not a step each."""
        for bucket, times in Tally(map(self._bucket, values)).items():
            counts[bucket] += times
        counts[-1] += sum(values)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """One histogram family, a metric per label set, cumulative buckets as Prometheus wants them."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, counts in self._children.items():
            family.add_metric(list(labels), list(zip(self._le, accumulate(counts[:-1]), strict=True)), counts[-1])
        yield family


class ProxyMetrics:
    """Requests by status, latency, attempts, failovers and cooldowns."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("llm_gateway_requests", "Proxied requests by endpoint and final status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histograms("llm_gateway_request_latency_seconds", "Time from request to last byte",
                                  ["endpoint"], LATENCY_BUCKETS, self.registry)
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
        # Successful attempts since the last settle: a plain count on the hot path, added to attempt["ok"] in bulk.
        self.ok_attempts = 0
        # Request counters by (endpoint label, status): labels() takes a lock and builds a key on every call.
        self._children: dict[tuple[str, int], Any] = {}

    def settle_attempts(self) -> None:
        """Add the successful attempts counted since the last call to their counter."""
        if self.ok_attempts:
            self.attempt["ok"].inc(self.ok_attempts)
            self.ok_attempts = 0

    def observe_all(self, paths: Sequence[str], statuses: Sequence[int], latencies: Sequence[float]) -> None:
        """Count finished requests, given as their paths, statuses and latencies (in the same order): each counter
        once per label set, each endpoint's latencies in one `Histograms.observe_many`."""
        children = self._children
        for (path, status), count in Tally(zip(paths, statuses, strict=True)).items():
            key = (endpoint_label(path), status)  # a client chooses the path: the label keeps the keys few
            child = children.get(key)
            if child is None:
                child = children[key] = self.requests.labels(key[0], str(status))
            child.inc(count)
        if len(set(paths)) == 1:  # the common batch: one endpoint
            groups: Mapping[str, Sequence[float]] = {endpoint_label(paths[0]): latencies}
        else:
            lists: dict[str, list[float]] = {}
            for path, latency_s in zip(paths, latencies, strict=True):
                lists.setdefault(endpoint_label(path), []).append(latency_s)
            groups = lists
        for label, values in groups.items():
            self.latency.observe_many(self.latency.child(label), values)


def endpoint_label(path: str) -> str:
    """The endpoint label of a proxied path: the path itself when known, else "other"."""
    return path if path in KNOWN_ENDPOINTS else OTHER_ENDPOINT


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics in Prometheus' text format, the requests finished since the last flush included."""
    request.config_dict[USAGE].settle()
    body = generate_latest(request.config_dict[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
