"""Prometheus metrics of one engine, the plain counters its Status messages carry, and the one
HTTP server (/metrics, /healthz) that the engine and the `mfvan-streamd` supervisor both use.

Why a private registry per engine: several engines (tests, a supervisor embedding one) can
live in one process without colliding on the global registry; `mfvan-engined` exposes its
registry on `metrics_port`, `mfvan-streamd` can merge it.
Why prometheus-client's WSGI app behind the stdlib's WSGI server: the exposition format,
content negotiation and gzip are the library's; what is ours is the dispatch (/healthz, 404),
the timeouts, and keeping junk requests out of the log.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

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
        self.trims = Counter("mfvan_engine_memory_trims", "heap trims after a burst drained (malloc_trim)", registry=r)
        self.counts: Tally[str] = Tally()  # mirrored into Status.counters

    def drop(self, reason: str) -> None:
        self.dropped.labels(reason=reason).inc()
        self.counts[f"dropped_{reason}"] += 1

    def healthy(self) -> tuple[bool, str]:
        """ok while the serving loop runs (`mfvan_engine_up` is 1)."""
        return (True, "ok") if self.registry.get_sample_value("mfvan_engine_up") == 1 else (False, "not serving")

    def serve(self, port: int, addr: str = "127.0.0.1") -> HttpServer:
        """/metrics and /healthz over HTTP from a daemon thread."""
        return serve_http(metrics_app(self.registry, self.healthy), port, addr)


# -- the one HTTP server: /metrics and /healthz for the supervisor and the engine --------------------
Health = Callable[[], tuple[bool, str]]  # (healthy, the state word shown when not: "degraded", "stopping", ...)

NOT_FOUND = b"not found: /metrics or /healthz\n"


def metrics_app(registry: CollectorRegistry, health: Health | None = None) -> Callable:
    """WSGI app: /metrics from prometheus-client (text format, gzip, `name[]` filter), /healthz
    200 "ok" only while `health()` says so, else 503 with the state word; 404 elsewhere."""
    prometheus = make_wsgi_app(registry)

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/metrics"):
            return prometheus(environ, start_response)
        if path.startswith("/healthz") and health is not None:
            ok, word = health()
            body = b"ok\n" if ok else (word.strip() or "unhealthy").encode() + b"\n"
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(NOT_FOUND)))])
        return [NOT_FOUND]

    return app


class _LogStream:
    """What wsgiref writes an application error to (its default is a traceback on stderr)."""

    def write(self, text: str) -> int:
        if text.strip():
            _http_log().warning("app", "metrics: request failed: %s", text.strip().splitlines()[-1][:200])
        return len(text)

    def flush(self) -> None:
        pass


class _Handler(WSGIRequestHandler):
    # per-read timeout: a client that stops sending (half a request, an idle keep-open) is cut off
    timeout = 5.0

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # one line per scrape is noise; failures go through handle_error

    def get_stderr(self):  # noqa: ANN201 - wsgiref's signature
        return _LogStream()

    def handle(self) -> None:
        # a client that hangs up, stalls or is cut off by the deadline is its own problem: no traceback
        try:
            super().handle()
        except (TimeoutError, OSError) as exc:
            logging.getLogger("mfvan.metrics").debug("metrics client %s: %s", self.client_address[0], exc)


class HttpServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, each with a read timeout and a total deadline.

    Why a deadline as well as the read timeout: a client trickling one byte every few seconds
    never trips a per-read timeout and would hold its thread for as long as it likes. The
    serving thread checks the open connections every `poll_s` and shuts the late ones down.
    Why no traceback: socketserver prints one for every request that fails (a port scanner's
    junk, a client that hangs up); a flood of them fills the journal and looks like a crash.
    """

    daemon_threads = True
    poll_s = 0.5
    # at most this many connections (threads, fds): past it the oldest is cut off, so idle or
    # slow clients can neither exhaust the process nor keep a health probe out
    max_connections = 64

    def __init__(self, addr: tuple[str, int], app: Callable, deadline_s: float = 10.0):
        self.deadline_s = deadline_s
        self._open: dict[socket.socket, float] = {}
        self._open_lock = threading.Lock()
        self.evicted = 0
        super().__init__(addr, _Handler)
        self.set_app(app)
        self.thread: threading.Thread | None = None

    def process_request(self, request, client_address) -> None:
        oldest = None
        with self._open_lock:
            if len(self._open) >= self.max_connections:
                oldest = min(self._open, key=self._open.__getitem__)  # the earliest deadline
                self._open.pop(oldest)
                self.evicted += 1
            self._open[request] = time.monotonic() + self.deadline_s
        if oldest is not None:
            try:
                oldest.shutdown(socket.SHUT_RDWR)  # its handler's read returns and its thread ends
            except OSError:
                pass
            _http_log().warning("http_full", "metrics: %d connections open, closed the oldest",
                                self.max_connections)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._open_lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        now = time.monotonic()
        with self._open_lock:
            late = [s for s, deadline in self._open.items() if now >= deadline]
        for s in late:  # the handler's blocked read returns; its thread closes the socket
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def connections(self) -> int:
        with self._open_lock:
            return len(self._open)

    def handle_error(self, request, client_address) -> None:
        _http_log().warning("http", "metrics: dropped a bad request from %s: %s", client_address[0], sys.exc_info()[1])

    def start(self) -> HttpServer:
        self.thread = threading.Thread(target=self.serve_forever, args=(self.poll_s,), name="mfvan-http", daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port (open connections are cut off by their deadline)."""
        self.shutdown()
        self.server_close()


def serve_http(app: Callable, port: int, host: str = "127.0.0.1", deadline_s: float = 10.0) -> HttpServer:
    """Serve `app` on host:port from a daemon thread; raises OSError when the port is taken."""
    return HttpServer((host, port), app, deadline_s).start()


_RATELOG: RateLimitedLog | None = None


def _http_log() -> RateLimitedLog:
    global _RATELOG
    if _RATELOG is None:
        _RATELOG = RateLimitedLog(logging.getLogger("mfvan.metrics"))
    return _RATELOG


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
