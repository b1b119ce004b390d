"""The engine's /metrics HTTP server under junk: one log line per failure kind, no tracebacks,
and it keeps serving; the rate-limited log really limits."""

from __future__ import annotations

import logging
import socket
import time
import urllib.request

from engine.metrics import EngineMetrics, RateLimitedLog
from streamer.harness.procs import free_port


def test_junk_http_costs_no_traceback_and_serving_goes_on(capfd, caplog) -> None:
    m = EngineMetrics("t", 8)
    m.pairs_in.inc(3)
    port = free_port()
    httpd, _ = m.serve(port)
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
        httpd.shutdown()
    assert "mfvan_engine_pairs_in_total 3.0" in body
    err = capfd.readouterr().err
    assert "Traceback" not in err and "-" * 40 not in err


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
