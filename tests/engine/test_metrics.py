"""The one HTTP server (/metrics, /healthz; the engine's and the supervisor's) under junk: one
log line per failure kind, no tracebacks, and it keeps serving; idle and trickling clients are
cut off by their timeouts instead of holding a thread; the rate-limited log really limits."""

from __future__ import annotations

import logging
import socket
import time
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from engine.metrics import EngineMetrics, HttpServer, RateLimitedLog, metrics_app, serve_http
from streamer.harness.procs import free_port, http_get


def test_junk_http_costs_no_traceback_and_serving_goes_on(capfd, caplog) -> None:
    m = EngineMetrics("t", 8)
    m.pairs_in.inc(3)
    port = free_port()
    httpd = m.serve(port)
    junk = [b"\x00\xff" * 300, b"BREW /metrics HTTP/1.1\r\n\r\n", b"GET /" + b"A" * 70_000 + b" HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"z" * 100_000 + b"\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost:", b"\r\n\r\n"]
    try:
        for i, payload in enumerate(junk * 4):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                try:
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                    if i % 2:  # half the clients hang up without reading the error reply
                        s.recv(64)
                except OSError:
                    pass
        time.sleep(0.3)  # handler threads finish (and would print) after the client is gone
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        httpd.close()
    assert "mfvan_engine_pairs_in_total 3.0" in body
    err = capfd.readouterr().err
    assert "Traceback" not in err and "-" * 40 not in err


def test_engine_healthz_follows_serving_and_other_paths_are_404() -> None:
    m = EngineMetrics("t", 8)
    port = free_port()
    httpd = m.serve(port)
    try:
        assert http_get(f"http://127.0.0.1:{port}/healthz") == (503, "not serving\n")
        m.up.set(1)
        assert http_get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        assert http_get(f"http://127.0.0.1:{port}/") == (404, "not found: /metrics or /healthz\n")
        status, body = http_get(f"http://127.0.0.1:{port}/metrics?name[]=mfvan_engine_up")
        assert status == 200 and "mfvan_engine_up 1.0" in body and "pairs_in" not in body  # the library's filter
    finally:
        httpd.close()


def _closed_by_server(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(64) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
    finally:
        s.setblocking(True)


def test_idle_and_trickling_clients_are_cut_off_and_release_their_thread() -> None:
    """A client sending a byte every 0.3 s never trips the read timeout; the connection deadline
    cuts it (and an idle one) off, their threads end, and the server still answers."""
    reg = CollectorRegistry()
    Counter("t_requests", "x", registry=reg).inc()
    port = free_port()
    httpd: HttpServer = serve_http(metrics_app(reg, lambda: (True, "ok")), port, deadline_s=1.5)
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    trickle = socket.create_connection(("127.0.0.1", port), timeout=10)
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100
    try:
        t0 = time.monotonic()
        for byte in request:
            if _closed_by_server(trickle):
                break
            try:
                trickle.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.3)
        held = time.monotonic() - t0
        assert held < 4.0, f"a trickling client held its connection for {held:.1f} s"
        assert idle.recv(64) == b""  # closed by the server, nothing sent
        deadline = time.monotonic() + 5
        while httpd.connections and time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpd.connections == 0
        assert http_get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        assert "t_requests_total 1.0" in http_get(f"http://127.0.0.1:{port}/metrics")[1]
    finally:
        idle.close()
        trickle.close()
        httpd.close()


def test_rate_limited_log_suppresses_and_reports_the_count(caplog) -> None:
    caplog.set_level(logging.WARNING)
    rl = RateLimitedLog(logging.getLogger("t"), interval_s=3600)
    for i in range(100):
        rl.warning("k", "bad %d", i)
    rl.warning("other", "another kind")
    assert [r.getMessage() for r in caplog.records] == ["bad 0", "another kind"]
    rl.interval = 0.0
    rl.warning("k", "bad again")
    assert caplog.records[-1].getMessage() == "bad again (+99 more like it suppressed)"
