"""`mfvan-streamd` as a real process (issue 12, items 4, 5, 7, 8): honest health, a dry run that
touches nothing, a bind-everywhere PUB the supervisor can still reach, children that do not
outlive a killed supervisor, SIGTERM honoured while the engine lingers, permanent errors fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.wire.client import Subscriber
from streamer.harness.procs import alive, free_port
from streamer.harness.soak import Daemon, write_looped_folder
from tests.helpers.reliability import wait_until

pytest.importorskip("torch")

FPS = 200.0


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    from streamer.harness.clip import render_test_clip

    return render_test_clip(200, [], fps=FPS, seed=5)  # 1 s of a real face, no events needed


def _wait_health(d: Daemon, pred, timeout: float, what: str) -> tuple[int, str]:
    end = time.monotonic() + timeout
    h = (0, "")
    while time.monotonic() < end:
        h = d.healthz()
        if pred(h):
            return h
        time.sleep(0.2)
    raise AssertionError(f"{what}: /healthz stayed {h}")


def test_health_follows_progress_dry_run_touches_nothing_children_die_with_the_supervisor(
        tmp_path: Path, artefact: Path, frames) -> None:
    clip = write_looped_folder(tmp_path / "clip", frames, int(120 * FPS), name="cam0")
    d = Daemon(tmp_path / "d", [str(clip)], fps=FPS, artefact=str(artefact))
    with d:
        d.wait_running()
        engine = d.engine_pid()
        streamer = next(p for p in d.children() if p != engine)

        # item 5: --dry-run beside the running daemon reports the ipc sockets in use, unlinks nothing
        pub_file = Path(d.pub_endpoint.removeprefix("ipc://"))
        inode = pub_file.stat().st_ino
        dry = subprocess.run([*d.command()[:-len(d.args)], *d.args, "--dry-run"], capture_output=True, text=True,
                             timeout=120)
        assert dry.returncode == 1, dry.stdout + dry.stderr
        assert f"[FAIL] endpoint {d.pub_endpoint} is in use" in dry.stdout, dry.stdout
        assert pub_file.stat().st_ino == inode, "the dry run replaced the live daemon's socket"
        with Subscriber(d.pub_endpoint, kinds=("hb/",)) as sub:  # a new client still reaches the daemon
            assert sub.recv(timeout_ms=10_000) is not None

        # item 7: a stopped (alive, silent) engine or streamer makes /healthz say so, then recovers
        for pid, why in ((engine, "engine silent"), (streamer, "no frames")):
            os.kill(pid, signal.SIGSTOP)
            try:
                status, body = _wait_health(d, lambda h: h[0] == 503, 15, f"SIGSTOP of {why}")
                assert why in body, body
            finally:
                os.kill(pid, signal.SIGCONT)
            _wait_health(d, lambda h: h[0] == 200, 20, f"recovery after {why}")

        # item 8: kill -9 of the supervisor: no child keeps running (they got SIGTERM, PDEATHSIG)
        kids = d.children()
        os.kill(d.pid, signal.SIGKILL)
        d.proc.wait(10)
        wait_until(lambda: not any(alive(p) for p in kids), 20, "the children to exit after the supervisor died")
    assert "Traceback" not in d.log()


def test_pub_on_every_interface_and_sigterm_during_the_linger(tmp_path: Path, artefact: Path, frames) -> None:
    """`--pub tcp://*:PORT` (the README's example) used to crash the readiness check; once the
    replay has ended the engine lingers, and SIGTERM must end that wait at once."""
    clip = write_looped_folder(tmp_path / "clip", frames, int(3 * FPS), name="cam0")
    port = free_port()
    d = Daemon(tmp_path / "d", [str(clip)], fps=FPS, artefact=str(artefact), realtime=True,
               overrides={"engine": {"security": {"insecure": True}}, "supervisor": {"linger_s": 120}},
               extra_args=["--pub", f"tcp://*:{port}"])
    with d:
        d.wait_running()
        with Subscriber(f"tcp://127.0.0.1:{port}", kinds=("hb/",)) as sub:
            assert sub.recv(timeout_ms=10_000) is not None
        wait_until(lambda: "every replay finished" in d.log(), 60, "the end of the replay")
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        code = d.proc.wait(30)
        took = time.monotonic() - t0
    assert code == 0 and took < 15, (code, took)
    log = d.log()
    assert f"binding tcp://*:{port} without CURVE" in log and "Traceback" not in log


def test_missing_video_is_one_line_and_exit_2_at_once(tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", "import sys; from streamer.daemon import main; sys.exit(main())",
                           "--video", str(tmp_path / "nope.mp4"), "--metrics-port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and time.monotonic() - t0 < 60
    assert proc.stderr.strip().splitlines()[-1].endswith("nope.mp4 does not exist"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_metrics_port_in_use_is_one_line_and_exit_2(tmp_path: Path, frames) -> None:
    """Item 11: a taken /metrics port ended the supervisor in an OSError traceback; now one
    line naming the port and the setting, exit 2, before any child starts."""
    import socket

    clip = write_looped_folder(tmp_path / "clip", frames, 20, name="cam0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "-c", "import sys; from streamer.daemon import main; sys.exit(main())",
                               "--video", str(clip), "--fps", "200", "--metrics-port", str(port),
                               "--pub", f"ipc://{tmp_path}/pub"],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "started:" not in proc.stderr


def test_truncated_video_and_a_slow_source_are_said_not_hidden(tmp_path: Path, artefact: Path) -> None:
    """A truncated recording replayed about half its frames and exited 0 without a word; a
    30 fps source gave no hint that micro-expressions need >= 100 fps (item 12)."""
    import cv2

    from streamer.harness.clip import render_test_clip

    video = tmp_path / "rec.mkv"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for img in render_test_clip(120, [], fps=30.0, seed=2):
        w.write(img)
    w.release()
    with open(video, "r+b") as f:  # cut the file in half, as a copy interrupted mid-way
        f.truncate(video.stat().st_size // 2)
    d = Daemon(tmp_path / "d", [str(video)], fps=None, realtime=False, artefact=str(artefact))
    with d:
        code = d.proc.wait(180)
    log = d.log()
    assert code == 1, log[-3000:]
    assert "the video ended after" in log and "of 120 frames" in log and "replay is incomplete" in log, log[-3000:]
    assert "30 fps is too slow for micro-expressions" in log
    assert "Traceback" not in log
    assert "[matroska" not in log and "[mjpeg" not in log  # FFmpeg's own lines: said through the logger


def test_malformed_timestamp_sidecar_is_one_clear_error(tmp_path: Path) -> None:
    """A damaged `.ts.csv` gave an IndexError traceback or 'noise floor file  unusable' (item 11)."""
    import cv2

    from streamer.capture import CaptureError, open_source

    video = tmp_path / "rec.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 200, (64, 48))
    for _ in range(5):
        w.write(np.zeros((48, 64, 3), np.uint8))
    w.release()
    side = Path(str(video) + ".ts.csv")
    for body, where in (("index,ts_ns\n0,100\n1\n", ":3:"), ("index,ts_ns\n0,abc\n", ":2:")):
        side.write_text(body)
        with pytest.raises(CaptureError, match=where):
            open_source(str(video))
    proc = subprocess.run([sys.executable, "-c", "import sys; from streamer.daemon import main; sys.exit(main())",
                           "--video", str(video), "--dry-run", "--metrics-port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and f"{side}:2: expected 'index,ts_ns'" in proc.stdout, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_curve_through_the_documented_top_level_security(tmp_path: Path, artefact: Path, frames, monkeypatch) -> None:
    """The README's `MFVAN_SECURITY__SERVER_SECRET_KEY` (top-level `security:`) used to leave the
    embedded engine's PUB in plaintext: it now configures it, the daemon's own links use the
    server's key pair, an allowed client receives, keyless and unlisted clients receive nothing."""
    from engine.keys import main as keys_main
    from engine.wire.security import Security

    keys = tmp_path / "keys"
    assert keys_main(["server", "--dir", str(keys)]) == 0
    assert keys_main(["client", "alice", "--dir", str(keys)]) == 0
    assert keys_main(["client", "mallory", "--dir", str(tmp_path / "other")]) == 0
    clip = write_looped_folder(tmp_path / "clip", frames, int(120 * FPS), name="cam0")
    d = Daemon(tmp_path / "d", [str(clip)], fps=FPS, artefact=str(artefact), tcp=True)
    monkeypatch.setenv("MFVAN_SECURITY__SERVER_SECRET_KEY", str(keys / "server.key_secret"))
    monkeypatch.setenv("MFVAN_SECURITY__CLIENT_ALLOW_DIR", str(keys / "clients"))

    def client(name: str, folder: Path) -> Security:
        return Security(server_public_key=str(keys / "server.key"), client_secret_key=str(folder / f"{name}.key_secret"))

    with d:
        d.wait_running()  # the supervisor's heartbeat check passed over CURVE
        with Subscriber(d.pub_endpoint, kinds=("hb/",), security=client("alice", keys)) as alice:
            assert alice.recv(timeout_ms=15_000) is not None
        for sec in (None, client("mallory", tmp_path / "other")):
            with Subscriber(d.pub_endpoint, kinds=("hb/",), security=sec) as other:
                assert other.recv(timeout_ms=1500) is None
        m = d.metrics()
        sent = sum(v for k, v in m.items() if k.startswith("mfvan_streamer_status_sent_total"))
        assert sent > 0, "the streamer's PUSH did not get through to the CURVE engine"
        # SIGHUP: the supervisor forwards it, the engine re-reads its allow-list; nobody dies
        kids = sorted(d.children())
        os.kill(d.pid, signal.SIGHUP)
        wait_until(lambda: "reloaded" in d.log(), 15, "the allow-list reload on SIGHUP")
        assert sorted(d.children()) == kids and d.healthz()[0] == 200
    assert "without CURVE" not in d.log()


def test_ambiguous_security_is_a_config_error(tmp_path: Path) -> None:
    from engine.config import ConfigError, load_config
    from streamer.config import StreamdConfig

    both = {"security": {"server_secret_key": "/a/server.key_secret"},
            "engine": {"security": {"server_secret_key": "/b/server.key_secret"}}}
    with pytest.raises(ConfigError, match="in one place"):
        load_config(StreamdConfig, environ={}, overrides=both)
    external = {"security": {"server_secret_key": "/a/server.key_secret"}, "embedded_engine": False}
    with pytest.raises(ConfigError, match="mfvan-engined"):
        load_config(StreamdConfig, environ={}, overrides=external)
    same = {"security": {"server_secret_key": "/a/k"}, "engine": {"security": {"server_secret_key": "/a/k"}}}
    cfg = load_config(StreamdConfig, environ={}, overrides=same)
    assert cfg.security.client_secret_key == "/a/k" and cfg.engine.security.server_secret_key == "/a/k"


def test_idle_metrics_connections_are_bounded_and_health_still_answers(tmp_path: Path, artefact: Path,
                                                                       frames) -> None:
    """Idle TCP connections to /metrics each held a supervisor thread (1,010 threads after
    150 s, then EMFILE): now at most HttpServer.max_connections, the oldest cut off (item 9)."""
    import re
    import socket

    from engine.metrics import HttpServer

    clip = write_looped_folder(tmp_path / "clip", frames, int(120 * FPS), name="cam0")
    d = Daemon(tmp_path / "d", [str(clip)], fps=FPS, artefact=str(artefact))
    with d:
        d.wait_running()
        idle = [socket.create_connection(("127.0.0.1", d.metrics_port), timeout=5) for _ in range(300)]
        try:
            time.sleep(1.0)
            threads = int(re.search(r"Threads:\s+(\d+)", Path(f"/proc/{d.pid}/status").read_text()).group(1))
            health = d.healthz()
        finally:
            for s in idle:
                s.close()
        assert health == (200, "ok\n"), health
        assert threads < HttpServer.max_connections + 40, threads
        assert d.proc.poll() is None
