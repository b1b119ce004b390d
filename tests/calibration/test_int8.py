"""INT8: calibration pairs → QDQ ONNX → accuracy report; the build refuses INT8 it cannot measure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from calibration.pairs import (
    CalibrationError,
    PairSet,
    collect,
    load_pairs,
    save_pairs,
    split_held_out,
)
from tests.helpers.engine import LABELS, face_pairs

pytest.importorskip("torch")


def pairset(n: int, subjects: int, seed: int = 0) -> PairSet:
    on, ap = face_pairs(n, seed=seed)
    return PairSet(onset=on, apex=ap, labels=np.arange(n) % 3, label_names=list(LABELS),
                   subjects=[f"sub{i % subjects:02d}" for i in range(n)])


def test_pairs_roundtrip_without_pickle(tmp_path: Path) -> None:
    ps = pairset(6, 3)
    path = save_pairs(tmp_path / "p.npz", ps)
    back = load_pairs(path)
    assert back.digest() == ps.digest() and list(back.subjects) == list(ps.subjects) and back.label_names == LABELS
    with pytest.raises(CalibrationError, match="labels"):
        collect(path, 112, ["a", "b", "c"])
    with pytest.raises(CalibrationError, match="64px"):
        collect(path, 64, LABELS)


def test_held_out_split_is_by_subject() -> None:
    calib, held = split_held_out(pairset(24, 8), 0.25)
    assert len(calib) + len(held) == 24 and len(held) > 0
    assert not set(calib.subjects) & set(held.subjects)
    assert len(set(held.subjects)) == 2


@pytest.fixture(scope="module")
def int8_artefact(tmp_path_factory) -> Path:
    from tests.helpers.engine import build

    tmp = tmp_path_factory.mktemp("int8")
    save_pairs(tmp / "pairs.npz", pairset(40, 8))
    return build(tmp, precision="int8", calib=str(tmp / "pairs.npz"), calib_method="minmax")


def test_int8_build_writes_qdq_model_and_report(int8_artefact: Path) -> None:
    import onnx

    from engine.artefact import load_artefact

    a = load_artefact(int8_artefact)
    m = a.manifest
    assert m.precision == "int8" and m.files["model.int8.onnx"].role == "onnx-qdq"
    ops = {n.op_type for n in onnx.load(str(a.path("model.int8.onnx"))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert m.calibration is not None and m.calibration.method == "minmax"
    assert m.calibration.pairs + m.calibration.held_out == 40 and len(m.calibration.hash) == 64
    report = json.loads(a.path(m.calibration.report).read_text())
    assert report["held_out_pairs"] == m.calibration.held_out
    for key in ("label_agreement", "accuracy_fp32", "accuracy_int8", "accuracy_delta", "macro_f1_delta"):
        assert key in report
    assert report["accuracy_delta"] == pytest.approx(report["accuracy_int8"] - report["accuracy_fp32"])
    assert report["probs_max_abs_diff"] > 0  # it really is a different (quantised) model


def test_int8_backend_agrees_with_fp32_labels(int8_artefact: Path) -> None:
    from engine.artefact import load_artefact
    from engine.backends import load_backend
    from engine.tensors import crops_to_nchw

    a = load_artefact(int8_artefact)
    on, ap = face_pairs(8, seed=5)
    x = crops_to_nchw(on), crops_to_nchw(ap)
    p32, _ = load_backend(a, "onnxruntime", "fp32", threads=1).infer(*x)
    p8, h8 = load_backend(a, "onnxruntime", "int8", threads=1).infer(*x)
    assert h8.shape == (8, 4, 7, 7)
    np.testing.assert_allclose(p8, p32, atol=0.05)  # INT8 tolerance: probabilities within 0.05
    assert (p8.argmax(1) == p32.argmax(1)).mean() >= 0.75


def test_int8_without_enough_held_out_pairs_refuses_unless_forced(tmp_path: Path, capsys) -> None:
    from engine.artefact import load_artefact
    from tests.helpers.engine import make_checkpoint
    from trainer.build import main

    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    save_pairs(tmp_path / "few.npz", pairset(6, 1))  # one subject, 6 pairs: 2 held out < 10
    base = ["--checkpoint", str(ckpt), "--precision", "int8", "-q"]
    assert main([*base, "--out", str(tmp_path / "x")]) == 2
    assert "--precision int8 needs --calib" in capsys.readouterr().err
    assert main([*base, "--calib", str(tmp_path / "few.npz"), "--out", str(tmp_path / "y")]) == 2
    assert "held-out pairs (min_held_out=10)" in capsys.readouterr().err
    assert not (tmp_path / "y" / "manifest.json").exists()
    assert main([*base, "--calib", str(tmp_path / "few.npz"), "--out", str(tmp_path / "z"), "--force"]) == 0
    m = load_artefact(tmp_path / "z").manifest
    assert m.calibration.report is None and m.calibration.pairs == 6 and "calibration_report.json" not in m.files


def test_recorder_keeps_valid_pairs_from_the_wire(tmp_path: Path) -> None:
    import threading

    import zmq

    from calibration.record import record
    from engine.wire.protocol import Pair, array_spec, encode_pair

    on, ap = face_pairs(5)
    endpoint = f"ipc://{tmp_path}/rec"
    ctx = zmq.Context()
    result: list = []
    t = threading.Thread(target=lambda: result.append(record(endpoint, 4, LABELS, ctx=ctx, progress=False)))
    t.start()
    push = ctx.socket(zmq.PUSH)
    push.linger = 1000
    push.connect(endpoint)
    push.send_multipart([b"JUNK", b""])
    for i in range(5):
        hdr = Pair(camera="cam2", track=i % 2, seq=i, onset_index=0, apex_index=1, offset_index=2, onset_ts_ns=0,
                   apex_ts_ns=0, offset_ts_ns=0, spotted_ns=0, score=1.0, crop=array_spec(on[i]))
        push.send_multipart(encode_pair(hdr, on[i], ap[i]))
    t.join(20)
    push.close()
    ctx.term()
    pairs, dropped = result[0]
    assert len(pairs) == 4 and dropped == {"version": 1}
    np.testing.assert_array_equal(pairs.apex, ap[:4])
    assert set(pairs.subjects) == {"cam2:0", "cam2:1"} and (pairs.labels == -1).all()


def test_pairs_from_a_casme2_layout_corpus(tmp_path: Path) -> None:
    """The corpus path: the trainer reads the annotation file into clips (mfvan-build-engine's
    reader), calibration crops them through the streamer's crop path (detect, track, warp)."""
    import cv2

    from trainer.media import local_stills

    stills = sorted(local_stills().values())
    rows = ["subject,clip,onset,apex,offset,label,kind,fps"]
    for i, still in enumerate(stills, start=1):
        img = cv2.imread(str(still))
        clip = tmp_path / f"sub{i:02d}" / f"EP0{i}_01"
        clip.mkdir(parents=True)
        shifted = cv2.warpAffine(img, np.float32([[1, 0, 2], [0, 1, 1]]), img.shape[1::-1])
        for n, frame in enumerate((img, img, shifted, img), start=1):
            cv2.imwrite(str(clip / f"img{n}.png"), frame)
        rows.append(f"{i:02d},EP0{i}_01,2,3,4,{LABELS[i % 3]},micro,200")
        rows.append(f"{i:02d},EP0{i}_01,1,3,4,happiness,macro,200")  # macro rows are not calibration pairs
    (tmp_path / "annotations.csv").write_text("\n".join(rows) + "\n")
    from trainer.build import _corpus_clips

    with pytest.raises(CalibrationError, match="corpus reader"):
        collect(tmp_path, 112, LABELS)  # calibration itself knows no dataset layout
    pairs = collect(tmp_path, 112, LABELS, read_corpus=_corpus_clips)
    assert len(pairs) == len(stills) and pairs.onset.shape[1:] == (112, 112, 3)
    assert list(pairs.subjects) == [f"sub{i:02d}" for i in range(1, len(stills) + 1)]
    assert list(pairs.labels) == [i % 3 for i in range(1, len(stills) + 1)]
    assert not np.array_equal(pairs.onset, pairs.apex)  # the apex frame really is the shifted one


def test_each_calibration_method_gives_its_own_model(int8_artefact: Path, tmp_path: Path) -> None:
    """Entropy must not silently equal MinMax (onnxruntime's defaults make it so: 128 bins folded
    to 128); a short last batch must not break the histogram calibrators."""
    import hashlib

    from calibration.quantize import quantize_qdq

    pairs = pairset(13, 4, seed=3)  # 13 = one full batch of 8 + a short one
    digests = {}
    for method in ("minmax", "entropy", "percentile"):
        out = tmp_path / f"{method}.onnx"
        # 256 bins keep the entropy search (Python, per tensor) short in CI; builds use 2048
        info = quantize_qdq(int8_artefact / "model.opt.onnx", out, pairs, method=method, entropy_bins=256)
        assert info["method"] == method and info["quantize_nodes"] > 0
        digests[method] = hashlib.sha256(out.read_bytes()).hexdigest()
    assert len(set(digests.values())) == 3, digests


def test_motion_form_is_calibrated_on_the_flow(tmp_path: Path) -> None:
    """A motion-form model's first input is the onset -> apex flow (engine.motion): INT8 scales
    learnt on raw onset crops would quantise an input the engine never feeds."""
    from calibration.quantize import PairReader
    from engine.motion import motion_nchw
    from engine.tensors import crops_to_nchw
    from tests.helpers.engine import build

    pairs = pairset(10, 5, seed=1)
    batch = PairReader(pairs, batch=4, form="motion").get_next()
    np.testing.assert_array_equal(batch["onset"], motion_nchw(pairs.onset[:4], pairs.apex[:4]))
    np.testing.assert_array_equal(batch["apex"], crops_to_nchw(pairs.apex[:4]))
    plain = PairReader(pairs, batch=4).get_next()
    np.testing.assert_array_equal(plain["onset"], crops_to_nchw(pairs.onset[:4]))

    save_pairs(tmp_path / "pairs.npz", pairset(40, 8))
    model = {"input_form": "motion", "embed_dim": 32, "depth": 1, "heads": 2, "stem": "conv", "global_pool": "flatten",
             "scale_pool": "flatten", "global_logits": True, "global_strides": 3, "fusion": "concat", "appearance": False}
    art = build(tmp_path, model=model, precision="int8", calib=str(tmp_path / "pairs.npz"), calib_method="minmax")
    report = json.loads((art / "calibration_report.json").read_text())
    assert report["held_out_pairs"] > 0 and 0.0 <= report["label_agreement"] <= 1.0
    assert report["quantize_nodes"] > 0
