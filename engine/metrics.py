"""Prometheus metrics of one engine, plus the plain counters its Status messages carry.

Why a private registry per engine: several engines (tests, a supervisor embedding one) can
live in one process without colliding on the global registry; `mfvan-engined` exposes its
registry on `metrics_port`, `mfvan-streamd` can merge it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter as Tally
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

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
        self.subscriptions = Gauge("mfvan_engine_subscriptions", "topic subscriptions applied on the PUB socket", registry=r)
        self.subscriptions_rejected = Counter(
            "mfvan_engine_subscriptions_rejected", "subscriptions refused (not an mfvan topic, or over the cap)", registry=r
        )
        self.counts: Tally[str] = Tally()  # mirrored into Status.counters

    def drop(self, reason: str) -> None:
        self.dropped.labels(reason=reason).inc()
        self.counts[f"dropped_{reason}"] += 1

    def serve(self, port: int, addr: str = "127.0.0.1"):
        """/metrics over HTTP in a daemon thread; returns (server, thread)."""
        return serve_quietly(make_wsgi_app(self.registry), port, addr)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # one line per scrape is noise; errors go through handle_error below


class _Server(ThreadingMixIn, WSGIServer):
    """socketserver prints a full traceback for every request that fails (junk from a port
    scanner, a client that hangs up): a flood of them would fill the journal and look like a
    crash. One rate-limited warning line instead."""

    daemon_threads = True
    _log = None

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if _Server._log is None:
            _Server._log = RateLimitedLog(logging.getLogger("mfvan.metrics"))
        _Server._log.warning("http", "metrics: dropped a bad request from %s: %s", client_address[0], exc)


def serve_quietly(app, port: int, addr: str = "127.0.0.1"):
    httpd = make_server(addr, port, app, _Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="mfvan-metrics", daemon=True)
    thread.start()
    return httpd, thread


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
