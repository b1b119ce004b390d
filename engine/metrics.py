"""Prometheus metrics of one engine, plus the plain counters its Status messages carry.

Why a private registry per engine: several engines (tests, a supervisor embedding one) can
live in one process without colliding on the global registry; `mfvan-engined` exposes its
registry on `metrics_port`, `mfvan-streamd` can merge it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class EngineMetrics:
    def __init__(self, engine_id: str, max_batch: int):
        self.registry = CollectorRegistry()
        r = self.registry
        self.pairs_in = Counter("mfvan_engine_pairs_in", "valid pairs received", registry=r)
        self.results_out = Counter("mfvan_engine_results_out", "results published", registry=r)
        self.republished = Counter("mfvan_engine_republished", "macro/status events republished", ["kind"], registry=r)
        self.dropped = Counter("mfvan_engine_dropped", "messages dropped, by reason", ["reason"], registry=r)
        buckets = sorted({1, 2, 4, 8, 16, 32, 64, 128, max_batch})
        self.batch_size = Histogram(
            "mfvan_engine_batch_size", "pairs per inference", buckets=[b for b in buckets if b <= max_batch], registry=r
        )
        self.infer_seconds = Histogram(
            "mfvan_engine_infer_seconds", "backend inference time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.latency_seconds = Histogram(
            "mfvan_engine_pair_latency_seconds", "pair received → result published", buckets=LATENCY_BUCKETS, registry=r
        )
        self.up = Gauge("mfvan_engine_up", "1 while serving", registry=r)
        self.counts: Tally[str] = Tally()  # mirrored into Status.counters

    def drop(self, reason: str) -> None:
        self.dropped.labels(reason=reason).inc()
        self.counts[f"dropped_{reason}"] += 1

    def serve(self, port: int, addr: str = "127.0.0.1"):
        return start_http_server(port, addr=addr, registry=self.registry)


class RateLimitedLog:
    """Log the first occurrence of each key, then at most once per `interval_s` with a count,
    so a flood of bad messages cannot flood the log (and slow the engine) too."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0):
        self.logger, self.interval = logger, interval_s
        self._last: dict[str, float] = {}
        self._suppressed: Tally[str] = Tally()

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] += 1
            return
        n = self._suppressed.pop(key, 0)
        self._last[key] = now
        self.logger.warning(msg + (f" (+{n} more like it suppressed)" if n else ""), *args)
