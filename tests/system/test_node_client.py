"""The Node.js conformance client (clients/node, written from docs/protocol.md and the committed
schema) against the golden vectors and against a live replay of a real `mfvan-streamd`: every
Result, Macro and Status it decodes equals what `mfvan-sub --json` printed for the same message,
field for field (probabilities to the bit, 64-bit timestamps exact), and its heatmap checksums
equal the Python SDK's. Skipped with the reason where node or the npm packages are absent
(`.ci/run` installs them: `npm ci` in clients/node)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.wire.client import Subscriber
from engine.wire.protocol import Result
from streamer.harness.clip import ClipEvent, render_test_clip, write_folder
from tests.system.test_daemon import config

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "clients" / "node"
BIN = Path(sys.executable).parent
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed (apt-get install nodejs npm)"),
    pytest.mark.skipif(not (NODE_DIR / "node_modules" / "zeromq").is_dir(),
                       reason="clients/node has no node_modules: run `npm ci` there (.ci/run does)"),
]


def test_node_client_decodes_every_golden_vector() -> None:
    r = subprocess.run([NODE, "vectors.mjs", str(ROOT / "docs" / "vectors")], cwd=NODE_DIR, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "15 passed, 0 failed" in r.stdout


def _key(ev: dict) -> tuple:
    return (ev["type"], ev.get("camera") or ev.get("component"), ev.get("seq", ev.get("ts_ns")))


def test_node_client_matches_mfvan_sub_on_a_live_replay(tmp_path: Path, artefact: Path) -> None:
    clip = tmp_path / "cam7"  # --video DIR names the camera after the folder
    events = [ClipEvent(240, 270, 300, "brow", 2.5), ClipEvent(420, 452, 485, "mouth", 2.5),
              ClipEvent(580, 640, 840, "mouth", 6.0, "macro")]
    write_folder(render_test_clip(900, events, 200.0, seed=3, noise=1.5), clip, ".bmp")
    cfg = config(tmp_path, artefact)
    pub = f"ipc://{tmp_path}/pub"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    node = subprocess.Popen([NODE, "sub.mjs", "--endpoint", pub, "--status"], cwd=NODE_DIR, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pysub = subprocess.Popen([str(BIN / "mfvan-sub"), "--endpoint", pub, "--json", "--status"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    sdk = Subscriber(pub)
    time.sleep(1.0)  # both subscribers connect first; ZeroMQ reconnects until the engine binds
    daemon = subprocess.Popen([str(BIN / "mfvan-streamd"), "--video", str(clip), "--fps", "200", "--config", str(cfg),
                               "--log-level", "WARNING"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checksums: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 240
        while daemon.poll() is None and time.monotonic() < deadline:
            ev = sdk.recv(timeout_ms=200)
            if ev is not None and isinstance(ev.header, Result):
                checksums[ev.header.seq] = hashlib.sha256(ev.heatmap.tobytes()).hexdigest()
        assert daemon.wait(timeout=30) == 0
        time.sleep(1.0)
    finally:
        sdk.close()
        for p, sig in ((node, signal.SIGTERM), (pysub, signal.SIGINT)):
            p.send_signal(sig)
        node_out, node_err = node.communicate(timeout=20)
        py_out, py_err = pysub.communicate(timeout=20)
        if daemon.poll() is None:
            daemon.kill()
    js = [json.loads(line) for line in node_out.splitlines() if line.strip()]
    py = [json.loads(line) for line in py_out.splitlines() if line.strip()]
    assert "invalid {}" in node_err, node_err
    js_by = {_key(e): e for e in js}
    py_by = {_key(e): e for e in py}
    results = [k for k in py_by if k[0] == "result"]
    assert len(results) >= 2 and any(k[0] == "macro" for k in py_by), py_err
    assert all(k[1] == "cam7" for k in results)
    common = set(js_by) & set(py_by)
    assert {k for k in py_by if k[0] in ("result", "macro")} <= common  # every event, in both
    assert any(k[0] == "status" for k in common)
    skip = {"type", "received_ns", "gap", "latency_ms", "heatmap_png", "heatmap_sha256", "apex_crop_sha256"}
    for k in common:
        a, b = js_by[k], py_by[k]
        fields = set(a) | set(b)
        for f in fields - skip:
            assert a.get(f) == b.get(f), (k, f, a.get(f), b.get(f))
        if k[0] == "result":
            assert a["offset_index"] >= a["apex_index"] and a["duration_ns"] == a["offset_ts_ns"] - a["onset_ts_ns"]
            assert a["apex_ts_ns"] > 2**53  # exact 64-bit integers, not rounded doubles
            assert a["heatmap_sha256"] == checksums[a["seq"]]
    engine_status = [js_by[k] for k in common if k[0] == "status" and js_by[k].get("model")]
    assert engine_status and engine_status[0]["model"]["labels"] == list(py_by[results[0]]["probs"])


def test_node_client_reads_a_curve_pub_with_mfvan_keys_files(tmp_path: Path) -> None:
    """The key-file format of docs/protocol.md (ZeroMQ certificates from `mfvan-keys`) is all a
    non-Python client needs for CURVE with a client allow-list."""
    import zmq

    from engine.wire import protocol as P
    from engine.wire.security import Security, secure_bind
    from streamer.harness.procs import free_port

    keys = tmp_path / "keys"
    for args in (["server"], ["client", "nodejs"]):
        subprocess.run([str(BIN / "mfvan-keys"), *args, "--dir", str(keys)], check=True, capture_output=True)
    sec = Security(server_secret_key=str(keys / "server.key_secret"), client_allow_dir=str(keys / "clients"))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.linger = 0
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    auth = secure_bind(sock, endpoint, sec)
    node = subprocess.Popen([NODE, "sub.mjs", "--endpoint", endpoint, "--heartbeats", "--timeout", "20",
                             "--server-key", str(keys / "server.key"), "--client-key", str(keys / "nodejs.key_secret")],
                            cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seq = 0
        deadline = time.monotonic() + 30
        while node.poll() is None and time.monotonic() < deadline:
            seq += 1
            sock.send_multipart(P.encode(P.Heartbeat(component="curve-engine", seq=seq, ts_ns=P.now_ns()), (),
                                         P.topic(P.TOPIC_HEARTBEAT, "curve-engine")))
            time.sleep(0.1)
            if seq == 30:
                node.send_signal(signal.SIGTERM)
        out, err = node.communicate(timeout=20)
    finally:
        if node.poll() is None:
            node.kill()
        sock.close(0)
        if auth is not None:
            auth.stop()
        ctx.term()
    beats = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert beats and all(b["type"] == "hb" and b["component"] == "curve-engine" for b in beats), err
