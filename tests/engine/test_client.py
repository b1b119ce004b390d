"""Subscriber SDK and mfvan-sub against a real ZeroMQ publisher (no mocks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from engine.keys import main as keys_main
from engine.wire import protocol as P
from engine.wire.client import SequenceTracker, Subscriber
from engine.wire.security import Security, SecurityError, secure_bind

LABELS = ("negative", "positive", "surprise")


def result(seq: int, camera: str = "cam0", crop: bool = False) -> list:
    heat = np.zeros((4, 112, 112), np.uint8)
    heat[:, 30:60, 40:80] = 200
    apex = np.full((112, 112, 3), 90, np.uint8) if crop else None
    probs = dict(zip(LABELS, (0.1, 0.7, 0.2), strict=True))
    header = P.Result(camera=camera, track=3, seq=seq, label="positive", probs=probs, onset_index=10 * seq,
                      apex_index=10 * seq + 7, offset_index=10 * seq + 9, onset_ts_ns=P.now_ns() - 6_000_000,
                      apex_ts_ns=P.now_ns() - 5_000_000, offset_ts_ns=P.now_ns() - 4_000_000,
                      duration_ns=2_000_000, spotted_ns=P.now_ns(),
                      inferred_ns=P.now_ns(), published_ns=P.now_ns(), engine_id="test", model_sha="abc",
                      heatmap=P.array_spec(heat), heatmap_names=("fused", "scale1", "scale2", "scale3"),
                      apex_crop=None if apex is None else P.array_spec(apex))
    return P.encode_result(header, heat, apex)


class Publisher:
    """Publishes a scripted sequence of messages over and over until stopped (slow joiners)."""

    def __init__(self, messages: list[list], security: Security | None = None):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.auth = secure_bind(self.sock, "tcp://127.0.0.1:*", security or Security())
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.messages = messages
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for frames in self.messages:
                self.sock.send_multipart(frames)
            time.sleep(0.05)

    def __enter__(self) -> Publisher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        if self.auth:
            self.auth.stop()
        self.sock.close(0)
        self.ctx.term()


def test_mfvan_sub_prints_json_results_from_a_real_publisher(tmp_path: Path) -> None:
    # seq 1, 2, then 5: two pairs never made it (refused at a full queue upstream)
    msgs = [[b"label/cam0/", b"MFV2", b"junk"]] + [result(s, crop=True) for s in (1, 2, 5)]
    with Publisher(msgs) as pub:
        proc = subprocess.run(
            [sys.executable, "-m", "engine.sub_cli", "--endpoint", pub.endpoint, "--json", "--count", "3",
             "--timeout", "30", "--save-heatmaps", str(tmp_path)],
            capture_output=True, text=True, timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert line["type"] == "result" and line["topic"] == "label/cam0/"
        assert line["label"] == "positive" and abs(sum(line["probs"].values()) - 1.0) < 1e-6
        assert line["latency_ms"] > 0
        png = cv2.imread(line["heatmap_png"])
        assert png is not None and png.shape == (112, 112 * 5, 3)  # crop + 4 overlays
    seqs = [line["seq"] for line in lines]
    assert len(set(seqs)) == 3  # distinct messages, whichever came first after joining
    assert "latency p50" in proc.stderr


def test_subscriber_counts_gaps_and_invalid_messages() -> None:
    msgs = [[b"label/cam0/", P.MAGIC, b"\xc1not-msgpack"]] + [result(s) for s in (1, 2, 5, 6)]
    with Publisher(msgs) as pub, Subscriber(pub.endpoint, cameras=["cam0"]) as sub:
        previous, gap_after_2 = None, None
        for _ in range(40):
            event = sub.recv(timeout_ms=5000)
            assert event is not None
            if previous == 2 and event.header.seq == 5:
                gap_after_2 = event.gap
                if sub.invalid:
                    break
            previous = event.header.seq
    assert gap_after_2 == 2
    assert sub.invalid["header"] >= 1  # the junk header was counted, not raised
    assert sub.sequences.skipped >= 2


def test_camera_subscription_does_not_leak_prefix_matches() -> None:
    msgs = [result(1, camera="cam10"), result(1, camera="cam1")]
    with Publisher(msgs) as pub, Subscriber(pub.endpoint, cameras=["cam1"]) as sub:
        cams = {sub.recv(timeout_ms=5000).header.camera for _ in range(6)}
    assert cams == {"cam1"}


def test_sequence_tracker_late_and_duplicate() -> None:
    t = SequenceTracker()
    stream = ("Result", "cam0")
    assert [t.observe(stream, s) for s in (1, 4, 2, 2, 5)] == [0, 2, 0, 0, 0]
    assert (t.skipped, t.late, t.duplicate, t.missing) == (2, 1, 1, 1)


@pytest.fixture()
def keys(tmp_path: Path) -> Path:
    assert keys_main(["server", "--dir", str(tmp_path)]) == 0
    assert keys_main(["client", "alice", "--dir", str(tmp_path)]) == 0
    assert keys_main(["client", "mallory", "--dir", str(tmp_path / "other")]) == 0
    assert oct(os.stat(tmp_path / "alice.key_secret").st_mode & 0o777) == "0o600"
    return tmp_path


def test_curve_allow_list_lets_only_allowed_clients_read(keys: Path) -> None:
    server = Security(server_secret_key=str(keys / "server.key_secret"), client_allow_dir=str(keys / "clients"))

    def client(name: str, folder: Path) -> Security:
        return Security(server_public_key=str(keys / "server.key"), client_secret_key=str(folder / f"{name}.key_secret"))

    with Publisher([result(1)], server) as pub:
        with Subscriber(pub.endpoint, security=client("alice", keys)) as alice:
            assert alice.recv(timeout_ms=10_000) is not None
        with Subscriber(pub.endpoint, security=client("mallory", keys / "other")) as mallory:
            assert mallory.recv(timeout_ms=1500) is None
        with Subscriber(pub.endpoint) as plain:  # no CURVE at all
            assert plain.recv(timeout_ms=1500) is None


def test_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUB)
    try:
        with pytest.raises(SecurityError, match="mfvan-keys"):
            secure_bind(sock, "tcp://127.0.0.1:*", Security(server_secret_key=str(tmp_path / "nope")))
    finally:
        sock.close(0)


def test_ipc_socket_gets_0660(tmp_path: Path) -> None:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUB)
    path = tmp_path / "pub.sock"
    try:
        secure_bind(sock, f"ipc://{path}", Security())
        assert oct(os.stat(path).st_mode & 0o777) == "0o660"
    finally:
        sock.close(0)


def test_mfvan_sub_rejects_bad_arguments() -> None:
    proc = subprocess.run([sys.executable, "-m", "engine.sub_cli", "--count", "-1"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--count" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "engine.sub_cli", "--endpoint", "nonsense://x", "--timeout", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "is not supported" in proc.stderr and "Traceback" not in proc.stderr
