"""mfvan-streamd end to end with real processes and sockets: a synthetic 200 fps clip with
known micro-events replayed through the daemon (spawned streamer + embedded engine built from
the real network); a subscriber gets a result with label, probabilities and heatmap for each
spotted micro event; /healthz and /metrics answer with every pipeline counter by camera; the
log level reaches the spawned children as an argument; sd_notify READY/STOPPING arrive; SIGTERM
exits cleanly; a crashing streamer exhausts the restart budget and the daemon gives up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.wire.client import Subscriber
from engine.wire.protocol import Macro, Result, Status
from streamer.harness.clip import ClipEvent, render_test_clip, write_folder
from streamer.harness.procs import free_port, http_get, parse_metrics

BIN = Path(sys.executable).parent
MICRO = [ClipEvent(240, 270, 300, "brow", 2.5), ClipEvent(420, 452, 485, "mouth", 2.5)]
MACRO = ClipEvent(580, 640, 840, "mouth", 6.0, "macro")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("clip") / "clip200"
    write_folder(render_test_clip(900, [*MICRO, MACRO], 200.0, seed=3, noise=1.5), d, ".bmp")  # fast to decode
    return d


def config(tmp: Path, artefact: Path, metrics_port: int = 0, **extra: str) -> Path:
    cfg = tmp / "streamd.yaml"
    lines = [
        "engine:", f"  artefact: '{artefact}'", f"  pair_endpoint: ipc://{tmp}/pairs", f"  pub_endpoint: ipc://{tmp}/pub",
        "  intra_op_threads: 1", "  heartbeat_s: 0.2", "supervisor:", f"  metrics_port: {metrics_port}",
        "  linger_s: 1.0", "  stop_timeout_s: 10", *extra.values(),
    ]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def test_replay_through_daemon_gives_a_result_per_micro_event(tmp_path: Path, artefact: Path, clip_dir: Path) -> None:
    port = free_port()
    cfg = config(tmp_path, artefact, metrics_port=port)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(0.1)
    sub = Subscriber(f"ipc://{tmp_path}/pub")  # connect first: ZeroMQ reconnects until the engine binds
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(BIN / "mfvan-streamd"), "--video", str(clip_dir), "--fps", "200", "--config", str(cfg),
                             "--log-level", "DEBUG"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results, macros, statuses, health, metrics = [], [], [], None, ""
    deadline = time.monotonic() + 240
    next_scrape = 0.0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            ev = sub.recv(timeout_ms=200)
            if ev is not None:
                {Result: results, Macro: macros, Status: statuses}.get(type(ev.header), []).append(ev)
            if statuses and time.monotonic() >= next_scrape:  # the last scrape sees the final counters
                next_scrape = time.monotonic() + 0.5
                code, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                if code == 200:
                    metrics = body
                if health is None or health[0] != 200:  # 503 "starting" until every child runs
                    health = http_get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.stdout.read()
        sub.close()
    assert rc == 0, out[-3000:]
    messages = []
    while True:
        try:
            messages.append(notify.recv(1024).decode())
        except OSError:
            break
    notify.close()
    spotted = [r.header for r in results]
    assert len(spotted) == len(MICRO), (spotted, out[-3000:])
    for h, truth, ev in zip(sorted(spotted, key=lambda h: h.apex_index), MICRO, sorted(results, key=lambda e: e.header.apex_index), strict=True):
        assert truth.onset - 20 <= h.apex_index <= truth.offset
        assert h.label in h.probs and abs(sum(h.probs.values()) - 1.0) < 1e-3
        assert h.heatmap is not None and ev.heatmap.shape == (len(h.heatmap_names), 112, 112)
        assert h.camera == "clip200"
    assert len(macros) == 1  # the macro-expression is published on macro/, not sent as a pair
    assert MACRO.onset - 40 <= macros[0].header.apex_index <= MACRO.offset
    assert health == (200, "ok\n")
    assert 'mfvan_streamer_frames_total{camera="clip200"}' in metrics and "mfvan_child_up" in metrics
    # every counter the pipeline keeps (tracker and spotter stats) and the publisher's reach /metrics
    from streamer.config import StreamdConfig
    from streamer.pipeline import Pipeline
    from streamer.spotting.spotter import SpotterStats
    from streamer.worker import COUNTERS, GAUGES

    s = StreamdConfig()
    kept = set(Pipeline(s.faces, s.spotter, 200.0, detector=lambda img: []).counters())
    kept |= {f for f in SpotterStats.__dataclass_fields__}
    assert kept <= set(COUNTERS), kept - set(COUNTERS)
    values = parse_metrics(metrics)
    for name in COUNTERS:
        key = f'mfvan_streamer_{name}{"" if name in GAUGES else "_total"}{{camera="clip200"}}'
        assert key in values, (key, metrics[-3000:])
    assert values['mfvan_streamer_flows_total{camera="clip200"}'] > 0
    assert values['mfvan_streamer_micro_total{camera="clip200"}'] == len(MICRO)
    assert values['mfvan_streamer_status_sent_total{camera="clip200"}'] > 0
    for name in ("blinks", "weak", "drift"):
        assert values[f'mfvan_streamer_{name}_total{{camera="clip200"}}'] >= 0
    # the supervisor's --log-level reached each spawned child as an argument (no environment variable)
    assert "DEBUG mfvan.process: streamer-clip200 (pid" in out and "DEBUG mfvan.process: engine (pid" in out
    assert any(m.startswith("READY=1") for m in messages) and "STOPPING=1" in messages
    assert "every replay finished" in out and "engine stopped (exit 0)" in out


def test_sigterm_stops_children_in_order_and_exits_0(tmp_path: Path, artefact: Path, clip_dir: Path) -> None:
    cfg = config(tmp_path, artefact)
    sub = Subscriber(f"ipc://{tmp_path}/pub", kinds=("status/",))
    proc = subprocess.Popen([str(BIN / "mfvan-streamd"), "--video", str(clip_dir), "--fps", "50", "--realtime",
                             "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert sub.recv(timeout_ms=120_000) is not None  # running: the streamer has reported
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
    out = proc.stdout.read()
    assert rc == 0, out[-2000:]
    assert "SIGTERM received" in out
    assert out.index("streamer-clip200 stopped (exit 0)") < out.index("engine stopped (exit 0)")


def test_streamer_that_never_opens_its_source_fails_fast(tmp_path: Path) -> None:
    """A source that cannot be opened at all is permanent: exit 2 at once (issue 12 item 7), not
    a minute of restarts under /healthz 200. A source failing after frames is restarted
    (tests/system/test_reliability_faults.py::test_failing_source_is_reported_and_restarted)."""
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 64)
    cfg = tmp_path / "s.yaml"
    cfg.write_text("supervisor:\n  max_restarts: 2\n  restart_window_s: 60\n  metrics_port: 0\n")
    proc = subprocess.run([str(BIN / "mfvan-streamd"), "--video", str(bad), "--engine", f"ipc://{tmp_path}/none",
                           "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "restart " not in proc.stderr and "not retrying" in proc.stderr
    assert "cannot open" in proc.stderr


def test_dry_run_reports_each_check(tmp_path: Path, artefact: Path, clip_dir: Path) -> None:
    cfg = config(tmp_path, artefact, metrics_port=free_port())
    ok = subprocess.run([str(BIN / "mfvan-streamd"), "--video", str(clip_dir), "--dry-run", "--config", str(cfg)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("[ok]") == 6 and "(480, 640, 3)" in ok.stdout
    bad = subprocess.run([str(BIN / "mfvan-streamd"), "--video", str(tmp_path / "nope.mp4"), "--dry-run",
                          "--config", str(config(tmp_path, tmp_path / "no-artefact"))],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stdout.count("[FAIL]") == 2 and "no such file" in bad.stdout and "rebuild" in bad.stdout


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    r = subprocess.run([str(BIN / "mfvan-streamd")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no source" in r.stderr and "Traceback" not in r.stderr
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("spotter:\n  k_mss: 3\n")
    r = subprocess.run([str(BIN / "mfvan-streamd"), "--video", "x", "--config", str(cfg)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and f"{cfg}:2: spotter.k_mss" in r.stderr
