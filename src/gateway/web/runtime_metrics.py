"""Gauges of the process itself on /metrics: asyncio tasks, upstream connections in use and idle, and
prometheus-client's process metrics (resident memory, open file descriptors). A leak shows here first."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.web.appkeys import HTTP_CLIENT


class RuntimeCollector(Collector):
    """Read at scrape time, on the event loop (the /metrics handler runs there)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Tasks alive on the loop, and the upstream pool's connections by state."""
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # scraped off the loop: nothing to count
            tasks = 0
        yield GaugeMetricFamily("llm_gateway_asyncio_tasks", "asyncio tasks alive in this process", value=tasks)
        connections = GaugeMetricFamily("llm_gateway_upstream_connections",
                                        "Connections of the upstream pool, in use or idle (keep-alive)",
                                        labels=["state"])
        session = self.app.get(HTTP_CLIENT)
        connector = session.connector if session is not None else None
        # aiohttp has no public counters: these are the connector's own bookkeeping.
        in_use = len(connector._acquired) if connector is not None else 0
        idle = sum(len(c) for c in connector._conns.values()) if connector is not None else 0
        connections.add_metric(["in_use"], in_use)
        connections.add_metric(["idle"], idle)
        yield connections


def register(app: web.Application, registry: CollectorRegistry) -> None:
    """Add the runtime and process gauges to the app's registry."""
    registry.register(RuntimeCollector(app))
    ProcessCollector(registry=registry)
