"""Prometheus metrics of one service, in a registry of its own (two apps in one process, as in the
tests or a Ray replica beside its controller, never share counters).

``icpd_requests_total{endpoint, status}``, ``icpd_stage_seconds{stage}`` (queue, decode, predict,
encode, total), ``icpd_queue_depth``, ``icpd_batch_tiles`` (tiles per predictor call),
``icpd_supports_loaded``, plus the process collector (``process_resident_memory_bytes``, CPU
seconds, open files) that Prometheus' own client exports by default.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ServeMetrics"]

# seconds: a tiny-preset tile takes ~10 ms on one CPU core, a 4k x 4k scene on the paper preset minutes
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServeMetrics:
    """The service's metrics; :meth:`render` gives the Prometheus text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.requests = Counter("icpd_requests", "HTTP requests answered, by endpoint (route) and status",
                                ["endpoint", "status"], registry=self.registry)
        self.stage = Histogram("icpd_stage_seconds", "Seconds per request stage (queue, decode, predict, encode, "
                               "total)", ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("icpd_queue_depth", "Requests waiting for a worker", registry=self.registry)
        self.batch = Histogram("icpd_batch_tiles", "Tiles per predictor call", buckets=BATCH_BUCKETS,
                               registry=self.registry)
        self.supports = Gauge("icpd_supports_loaded", "Support sets (classes) loaded", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
