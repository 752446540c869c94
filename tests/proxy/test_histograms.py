"""The proxy's per-request histograms (plain counts exposed as histogram families) read exactly as
prometheus_client's own Histogram would for the same observations."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.proxy.metrics import KNOWN_ENDPOINTS, LATENCY_BUCKETS, OTHER_ENDPOINT, Histograms, ProxyMetrics

VALUES = [0.0, 0.004, 0.005, 0.0050001, 0.3, 1.0, 59.9, 120.0, 120.5, 3600.0, 0.02, 0.02]


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if not s.name.endswith("_created")}


def test_histograms_expose_what_prometheus_clients_histogram_exposes() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("latency_seconds", "doc", ["endpoint"], buckets=LATENCY_BUCKETS, registry=theirs)
    histograms = Histograms("latency_seconds", "doc", ["endpoint"], LATENCY_BUCKETS, ours)
    for n, value in enumerate(VALUES):
        endpoint = "/chat/completions" if n % 3 else "/embeddings"
        reference.labels(endpoint).observe(value)
        histograms.observe(histograms.child(endpoint), value)
    histograms.observe(histograms.child("/responses"), 0.7, times=3)
    for _ in range(3):
        reference.labels("/responses").observe(0.7)
    expected = samples(theirs)
    assert samples(ours) == expected
    assert expected[("latency_seconds_count", (("endpoint", "/embeddings"),))] == 4


def test_observe_all_counts_what_prometheus_clients_counter_and_histogram_count() -> None:
    """Batches as the usage writer settles them: one endpoint (its fast path), then mixed, unknown paths counted
    as "other", latencies on bucket bounds; counters per (endpoint, status), one histogram per endpoint."""
    theirs = CollectorRegistry()
    requests = Counter("llm_gateway_requests", "doc", ["endpoint", "status"], registry=theirs)
    latency = Histogram("llm_gateway_request_latency_seconds", "doc", ["endpoint"], buckets=LATENCY_BUCKETS,
                        registry=theirs)
    metrics = ProxyMetrics()
    batches = [
        [("/chat/completions", 200, value) for value in VALUES],
        [("/embeddings", 200, 0.005), ("/chat/completions", 502, 0.3), ("/v1x/made-up", 200, 0.02),
         ("/another/one", 404, 30.0), ("/chat/completions", 200, 0.0), ("/embeddings", 429, 121.0)],
        [("/made-up", 200, 2.5)],
    ]
    for batch in batches:
        for path, status, value in batch:
            endpoint = path if path in KNOWN_ENDPOINTS else OTHER_ENDPOINT
            requests.labels(endpoint, str(status)).inc()
            latency.labels(endpoint).observe(value)
        paths, statuses, latencies = (list(column) for column in zip(*batch, strict=True))
        metrics.observe_all(paths, statuses, latencies)
    expected, got = samples(theirs), {key: value for key, value in samples(metrics.registry).items()
                                      if key[0].startswith(("llm_gateway_requests", "llm_gateway_request_latency"))}
    assert got.keys() == expected.keys()
    for key, value in expected.items():  # sums added in another order: equal to rounding
        assert got[key] == (pytest.approx(value) if key[0].endswith("_sum") else value), key
    assert expected[("llm_gateway_requests_total", (("endpoint", "other"), ("status", "200")))] == 2


def test_client_paths_do_not_grow_the_counters_kept() -> None:
    """A client chooses a pass-through path: a thousand made-up ones keep one counter, "other"'s (its memory)."""
    metrics = ProxyMetrics()
    paths = [f"/made-up/{n}" for n in range(1000)]
    metrics.observe_all(paths, [200] * 1000, [0.01] * 1000)
    metrics.observe_all(["/chat/completions", *paths[:10]], [200] * 11, [0.01] * 11)
    assert set(metrics._children) == {(OTHER_ENDPOINT, 200), ("/chat/completions", 200)}
