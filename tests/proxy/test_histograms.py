"""The proxy's per-request histograms (plain counts exposed as histogram families) read exactly as
prometheus_client's own Histogram would for the same observations."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.proxy.metrics import LATENCY_BUCKETS, Histograms

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
