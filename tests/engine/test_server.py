"""build → serve → a real ZeroMQ client: results equal the torch model's; bad input is dropped
and counted, never fatal; Macro/Status republished; heartbeats flow; corrupt artefacts refuse."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq

from engine.artefact import load_artefact
from engine.config.engine import BatchingConfig, EngineConfig
from engine.server import run
from engine.wire.protocol import (
    MAGIC,
    Heartbeat,
    Macro,
    Pair,
    Result,
    Status,
    array_spec,
    decode,
    encode,
    encode_pair,
    now_ns,
)
from streamer.harness.procs import free_port
from tests.helpers.engine import face_pairs

pytest.importorskip("torch")


class Engine:
    """run() in a thread with ipc endpoints, plus a SUB and a PUSH client."""

    def __init__(self, tmp: Path, artefact: Path, **cfg):
        self.cfg = EngineConfig(
            artefact=str(artefact),
            backend="onnxruntime",
            pair_endpoint=f"ipc://{tmp}/pairs",
            pub_endpoint=f"ipc://{tmp}/pub",
            engine_id="eng-test",
            heartbeat_s=0.1,
            intra_op_threads=1,
            **cfg,
        )
        self.stop = threading.Event()
        self.rc: list[int] = []
        self.thread = threading.Thread(target=lambda: self.rc.append(run(self.cfg, self.stop)), daemon=True)
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.linger = 0
        self.sub.subscribe(b"")
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.linger = 0

    def __enter__(self) -> Engine:
        self.thread.start()
        self.sub.connect(self.cfg.pub_endpoint)
        self.push.connect(self.cfg.pair_endpoint)
        # the first heartbeat proves the server is up and our subscription has landed
        self.wait_for(lambda h, _a: isinstance(h, Heartbeat), timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)
        self.sub.close(0)
        self.push.close(0)
        self.ctx.term()

    def recv(self, timeout: float):
        if not self.sub.poll(int(timeout * 1000)):
            return None
        return decode(self.sub.recv_multipart(), has_topic=True)

    def wait_for(self, pred, timeout: float = 10.0, n: int = 1) -> list:
        got, end = [], time.monotonic() + timeout
        while len(got) < n and time.monotonic() < end:
            msg = self.recv(max(0.0, end - time.monotonic()))
            if msg is not None and pred(msg[1], msg[2]):
                got.append(msg)
        assert len(got) == n, f"got {len(got)} of {n} awaited messages"
        return got

    def stop_and_final_status(self) -> Status:
        self.stop.set()
        (_, st, _), = self.wait_for(lambda h, _a: isinstance(h, Status) and h.state == "stopping", timeout=10)
        self.thread.join(10)
        assert self.rc == [0]
        return st


def pair(seq: int, crop: np.ndarray, camera: str = "cam1") -> Pair:
    return Pair(
        camera=camera, track=3, seq=seq, onset_index=10, apex_index=20, offset_index=30,
        onset_ts_ns=now_ns(), apex_ts_ns=now_ns(), offset_ts_ns=now_ns(), spotted_ns=now_ns(), score=0.7, crop=array_spec(crop),
    )


def torch_probs(artefact: Path, onset: np.ndarray, apex: np.ndarray):
    """The reference: the engine's pre-processing for this artefact (the flow for a motion-form
    model) and the torch backend."""
    from engine.tensors import pair_inputs
    from trainer.torch_backend import TorchBackend

    art = load_artefact(artefact)
    tb = TorchBackend(art, "fp32", threads=1, device="cpu")
    return tb.infer(*pair_inputs(onset, apex, art.manifest))


def test_results_equal_torch(tmp_path: Path, artefact: Path) -> None:
    onset, apex = face_pairs(7)
    with Engine(tmp_path, artefact, batching=BatchingConfig(max_batch=4, max_wait_ms=5)) as eng:
        for i in range(len(onset)):
            eng.push.send_multipart(encode_pair(pair(i, onset[i]), onset[i], apex[i]))
        got = eng.wait_for(lambda h, _a: isinstance(h, Result), n=len(onset), timeout=30)
        st = eng.stop_and_final_status()
    want_p, want_h = torch_probs(artefact, onset, apex)
    manifest = load_artefact(artefact).manifest
    by_seq = {h.seq: (topic, h, arrays) for topic, h, arrays in got}
    assert sorted(by_seq) == list(range(len(onset)))
    for i in range(len(onset)):
        topic, res, (heat,) = by_seq[i]
        assert topic == b"label/cam1/"
        probs = np.array([res.probs[name] for name in manifest.labels])
        np.testing.assert_allclose(probs, want_p[i], atol=1e-4)
        assert res.label == manifest.labels[int(want_p[i].argmax())]
        assert res.model_sha == load_artefact(artefact).identity and res.engine_id == "eng-test"
        assert heat.shape == (4, 112, 112) and heat.dtype == np.uint8
        assert res.heatmap_names == ("fused", "scale1", "scale2", "scale3")
        # the published map is the network's grid, upsampled: its coarse mean matches torch's
        assert abs(heat[0].mean() / 255.0 - want_h[i, 0].mean()) < 0.02
        assert res.spotted_ns <= res.inferred_ns <= res.published_ns
    assert st.counters["pairs_in"] == len(onset) and st.counters["results_out"] == len(onset)


def test_trained_demo_model_end_to_end_equals_torch(tmp_path: Path) -> None:
    """The bundled demo checkpoint (trained weights): build with the default --checkpoint, serve,
    and the published probabilities are torch's for the same wire pairs."""
    from trainer.build import DEMO_CHECKPOINT, build_artefact
    from trainer.config.build import BuildConfig

    if not DEMO_CHECKPOINT.is_file():
        pytest.skip(f"{DEMO_CHECKPOINT} not trained yet (model helper)")
    art = tmp_path / "demo"
    build_artefact(BuildConfig(out=str(art)), progress=False)
    onset, apex = face_pairs(4, seed=7)
    with Engine(tmp_path, art, batching=BatchingConfig(max_batch=2, max_wait_ms=1)) as eng:
        for i in range(4):
            eng.push.send_multipart(encode_pair(pair(i, onset[i]), onset[i], apex[i]))
        got = eng.wait_for(lambda h, _a: isinstance(h, Result), n=4, timeout=30)
    want_p, _ = torch_probs(art, onset, apex)
    labels = load_artefact(art).manifest.labels
    for _, res, _ in got:
        np.testing.assert_allclose([res.probs[n] for n in labels], want_p[res.seq], atol=1e-4)
        assert res.label == labels[int(want_p[res.seq].argmax())]


def test_bad_messages_are_dropped_counted_and_survived(tmp_path: Path, artefact: Path, caplog) -> None:
    onset, apex = face_pairs(1)
    small = np.zeros((64, 64, 3), np.uint8)
    good = encode_pair(pair(99, onset[0]), onset[0], apex[0])
    bad = [
        [b"MFV0", good[1], onset[0].tobytes(), apex[0].tobytes()],  # version
        [MAGIC, b"\xc1not msgpack"],  # header
        [MAGIC],  # frames
        good[:3],  # frames: one crop missing
        [MAGIC, good[1], b"\x00" * 10, b"\x00" * 10],  # array: bytes != declared shape
        encode_pair(pair(5, small), small, small),  # crop_size: engine-side check
        encode(Heartbeat(component="x", seq=1, ts_ns=1)),  # unexpected on the pair channel
        # schema: timestamps msgpack carries but whose difference (the Result's duration) it
        # cannot; this one Pair used to crash the engine with an OverflowError
        encode_pair(msgspec.structs.replace(pair(7, onset[0]), onset_ts_ns=-(2**63), offset_ts_ns=2**64 - 1),
                    onset[0], apex[0]),
    ]
    caplog.set_level(logging.WARNING, logger="mfvan.engine")
    with Engine(tmp_path, artefact) as eng:
        for frames in bad:
            eng.push.send_multipart(frames)
        eng.push.send_multipart(good)
        (_, res, _), = eng.wait_for(lambda h, _a: isinstance(h, Result), timeout=20)
        assert res.seq == 99
        st = eng.stop_and_final_status()
    c = st.counters
    for reason in ("version", "header", "frames", "array", "crop_size", "unexpected", "schema"):
        assert c.get(f"dropped_{reason}", 0) >= 1, (reason, c)
    assert c["dropped_frames"] == 2 and c["pairs_in"] == 1 and c["results_out"] == 1
    assert any("dropped a bad message" in r.message for r in caplog.records)


def test_macro_and_status_republished_heartbeat_on_topic(tmp_path: Path, artefact: Path) -> None:
    macro = Macro(
        camera="cam7", track=1, seq=4, onset_index=1, apex_index=50, offset_index=400,
        onset_ts_ns=1, apex_ts_ns=2, offset_ts_ns=3, score=2.5, spotted_ns=4,
    )
    streamer_status = Status(component="streamer-cam7", state="running", ts_ns=5, counters={"frames": 10})
    with Engine(tmp_path, artefact) as eng:
        eng.push.send_multipart(encode(macro))
        eng.push.send_multipart(encode(streamer_status))
        (t1, m, _), = eng.wait_for(lambda h, _a: isinstance(h, Macro))
        (t2, s, _), = eng.wait_for(lambda h, _a: isinstance(h, Status) and h.component == "streamer-cam7")
        (t3, hb, _), = eng.wait_for(lambda h, _a: isinstance(h, Heartbeat))
    assert (t1, m) == (b"macro/cam7/", macro)
    assert (t2, s) == (b"status/streamer-cam7/", streamer_status)
    assert t3 == b"hb/eng-test/" and hb.component == "eng-test"


def test_corrupt_artefact_refuses_to_start_with_rebuild_hint(tmp_path: Path, artefact: Path, caplog) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(artefact, broken)
    data = bytearray((broken / "model.opt.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (broken / "model.opt.onnx").write_bytes(bytes(data))
    cfg = EngineConfig(artefact=str(broken), pair_endpoint=f"ipc://{tmp_path}/p", pub_endpoint=f"ipc://{tmp_path}/q")
    caplog.set_level(logging.ERROR, logger="mfvan.engine")
    assert run(cfg, threading.Event()) == 2
    msg = " ".join(r.message for r in caplog.records)
    assert "model.opt.onnx sha256" in msg and "mfvan-build-engine" in msg

    # a manifest that lies about the input spec: the model cannot be fed, start fails
    manifest = json.loads((artefact / "manifest.json").read_text())
    manifest["input"]["crop_size"] = 96
    shutil.copytree(artefact, tmp_path / "spec", dirs_exist_ok=True)
    (tmp_path / "spec" / "manifest.json").write_text(json.dumps(manifest))
    caplog.clear()
    cfg = cfg.model_copy(update={"artefact": str(tmp_path / "spec")})
    assert run(cfg, threading.Event()) == 2
    assert "want float [B, 3, 96, 96]" in " ".join(r.message for r in caplog.records)


def test_prometheus_metrics_count_pairs_results_drops(tmp_path: Path, artefact: Path) -> None:
    import urllib.request

    port = free_port()
    onset, apex = face_pairs(3)
    with Engine(tmp_path, artefact, metrics_port=port) as eng:
        for i in range(3):
            eng.push.send_multipart(encode_pair(pair(i, onset[i]), onset[i], apex[i]))
        eng.push.send_multipart([b"MFV1", b"x"])  # an older version
        eng.wait_for(lambda h, _a: isinstance(h, Result), n=3, timeout=20)
        time.sleep(0.2)  # the drop is counted within the same loop turn; give it one
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and not line.startswith("#")}
    assert values["mfvan_engine_pairs_in_total"] == 3
    assert values["mfvan_engine_results_out_total"] == 3
    assert values['mfvan_engine_dropped_total{reason="version"}'] == 1
    assert values["mfvan_engine_batch_size_count"] >= 1 and values["mfvan_engine_batch_size_sum"] == 3
    assert values["mfvan_engine_pair_latency_seconds_count"] == 3


def test_run_in_a_spawned_process_stops_on_its_event(tmp_path: Path, artefact: Path) -> None:
    """How mfvan-streamd embeds the engine: spawn context, multiprocessing.Event."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    cfg = EngineConfig(
        artefact=str(artefact), pair_endpoint=f"ipc://{tmp_path}/sp", pub_endpoint=f"ipc://{tmp_path}/sq",
        engine_id="spawned", heartbeat_s=0.1, intra_op_threads=1,
    )
    zctx = zmq.Context()
    sub = zctx.socket(zmq.SUB)
    sub.linger = 0
    sub.subscribe(b"")
    sub.connect(cfg.pub_endpoint)
    proc = ctx.Process(target=run, args=(cfg, stop))
    proc.start()
    try:
        assert sub.poll(60_000), "no heartbeat from the spawned engine"
        topic_, hb, _ = decode(sub.recv_multipart(), has_topic=True)
        assert topic_ in (b"hb/spawned/", b"status/spawned/")
        stop.set()
        proc.join(20)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
        sub.close(0)
        zctx.term()


def test_endpoint_in_use_is_a_clean_start_failure(tmp_path: Path, artefact: Path, caplog) -> None:
    port = free_port()
    zctx = zmq.Context()
    squatter = zctx.socket(zmq.PUB)
    squatter.linger = 0
    squatter.bind(f"tcp://127.0.0.1:{port}")
    cfg = EngineConfig(artefact=str(artefact), pair_endpoint=f"ipc://{tmp_path}/p", pub_endpoint=f"tcp://127.0.0.1:{port}")
    caplog.set_level(logging.ERROR, logger="mfvan.engine")
    try:
        assert run(cfg, threading.Event()) == 2
    finally:
        squatter.close(0)
        zctx.term()
    assert "cannot open" in " ".join(r.message for r in caplog.records)


def test_oversized_frame_is_refused_and_serving_goes_on(tmp_path: Path, artefact: Path) -> None:
    from engine.wire.protocol import MAX_ARRAY_BYTES

    onset, apex = face_pairs(1)
    good = encode_pair(pair(1, onset[0]), onset[0], apex[0])
    with Engine(tmp_path, artefact) as eng:
        eng.push.send_multipart([good[0], good[1], bytes(MAX_ARRAY_BYTES + 4096), good[3]])
        time.sleep(0.5)  # the transport drops the peer; PUSH reconnects by itself
        eng.push.send_multipart(good)
        (_, res, _), = eng.wait_for(lambda h, _a: isinstance(h, Result), timeout=20)
        st = eng.stop_and_final_status()
    assert res.seq == 1 and st.counters["pairs_in"] == 1  # the huge message never reached decode


@pytest.mark.parametrize("nodrop", [False, True])
def test_stalled_subscriber_never_blocks_inference(tmp_path: Path, artefact: Path, nodrop: bool) -> None:
    """A subscriber that stops reading: by default the others still get everything; with
    pub_nodrop every refused send is counted instead. Either way the engine keeps going."""
    n = 30
    onset, apex = face_pairs(2)
    with Engine(tmp_path, artefact, pub_hwm=2, pub_nodrop=nodrop) as eng:
        stalled = eng.ctx.socket(zmq.SUB)
        stalled.linger = 0
        stalled.rcvhwm = 1
        stalled.subscribe(b"label/")
        stalled.connect(eng.cfg.pub_endpoint)
        time.sleep(0.3)  # let the subscription land
        got = 0
        for i in range(n):
            eng.push.send_multipart(encode_pair(pair(i, onset[i % 2]), onset[i % 2], apex[i % 2]))
            # the reading subscriber keeps up, message by message
            while eng.sub.poll(20):
                _, h, _ = decode(eng.sub.recv_multipart(), has_topic=True)
                got += isinstance(h, Result)
        quiet_until = time.monotonic() + 1.0  # until no Result came for 1 s (heartbeats keep flowing)
        while got < n and time.monotonic() < quiet_until:
            if eng.sub.poll(100):
                _, h, _ = decode(eng.sub.recv_multipart(), has_topic=True)
                if isinstance(h, Result):
                    got += 1
                    quiet_until = time.monotonic() + 1.0
        st = eng.stop_and_final_status()
        stalled.close(0)
    c = st.counters
    assert c["pairs_in"] == n
    assert c["results_out"] + c.get("dropped_pub_full", 0) == n
    if nodrop:
        assert c.get("dropped_pub_full", 0) > 0 and got == c["results_out"]
    else:
        assert got == n and c["results_out"] == n


def test_subscriptions_are_validated_and_isolated(tmp_path: Path, artefact: Path) -> None:
    """XPUB manual mode: junk topics are refused (and counted), real ones apply to their own
    subscriber only, and one subscriber leaving does not take another's subscriptions along."""
    onset, apex = face_pairs(1)

    def send(eng: Engine, cam: str, seq: int) -> None:
        eng.push.send_multipart(encode_pair(pair(seq, onset[0], camera=cam), onset[0], apex[0]))

    def results(sock, n_expected: int, timeout: float = 10.0) -> list[tuple[str, int]]:
        got, end = [], time.monotonic() + timeout
        while len(got) < n_expected and time.monotonic() < end:
            if sock.poll(100):
                _, h, _ = decode(sock.recv_multipart(), has_topic=True)
                if isinstance(h, Result):
                    got.append((h.camera, h.seq))
        return got

    with Engine(tmp_path, artefact) as eng:
        a = eng.ctx.socket(zmq.SUB)
        b = eng.ctx.socket(zmq.SUB)
        junk = eng.ctx.socket(zmq.XSUB)
        for s in (a, b, junk):
            s.linger = 0
            s.connect(eng.cfg.pub_endpoint)
        a.subscribe(b"label/cam1/")
        b.subscribe(b"label/cam1/")
        b.subscribe(b"label/cam2/")
        rng = np.random.default_rng(0)
        for _ in range(20):  # short junk reaches the engine, which refuses it
            junk.send(b"\x01" + rng.integers(0, 256, 30, dtype=np.uint8).tobytes())
        junk.send(b"\x01label/" + b"x" * 65 + b"/")  # a name longer than any camera's
        long_junk = eng.ctx.socket(zmq.XSUB)
        long_junk.linger = 0
        long_junk.connect(eng.cfg.pub_endpoint)
        for _ in range(5):  # longer than any mfvan topic: the transport drops the peer (not counted)
            long_junk.send(b"\x01" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
        time.sleep(0.5)
        send(eng, "cam1", 1)
        send(eng, "cam2", 2)
        assert sorted(results(a, 2, timeout=3)) == [("cam1", 1)]
        assert sorted(results(b, 2)) == [("cam1", 1), ("cam2", 2)]
        a.close(0)  # its subscription to label/cam1/ goes; b's must stay
        time.sleep(0.5)
        send(eng, "cam1", 3)
        send(eng, "cam2", 4)
        assert sorted(results(b, 2)) == [("cam1", 3), ("cam2", 4)]
        st = eng.stop_and_final_status()
        for s in (b, junk, long_junk):
            s.close(0)
    assert st.counters["subscriptions_rejected"] == 21
