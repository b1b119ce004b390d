"""The motion input form: engine.motion (OpenCV DIS) reads a known warp, training computes the
very numbers the engine's pre-processing computes, the network exports to ONNX and matches
torch through the engine's own pair_inputs, every Table 3 row still builds, and the engine
applies the motion only to artefacts whose manifest says so."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from engine.motion import motion_nchw, pair_motion
from engine.tensors import crops_to_nchw, input_form, pair_inputs
from trainer.config.train import ModelConfig
from trainer.evaluate.protocol import ABLATION_ROWS
from trainer.export import export_onnx
from trainer.models import create_model, export_module, network_inputs
from trainer.models.mfvan import motion_of
from trainer.train.data import to_tensor

torch.set_num_threads(1)
cv2.setNumThreads(1)
S = 48


def cfg(**kw) -> ModelConfig:
    return ModelConfig(**{"name": "mfvan_lite", "input_form": "motion", "crop_size": S, "grid": 6, "embed_dim": 32,
                          "heads": 2, "depth": 1, **kw})


def warped_pair(amp: float, size: int = 112, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured crop and the same crop under a smooth local shift of `amp` px (to the right)."""
    rng = np.random.default_rng(seed)
    grey = cv2.GaussianBlur(rng.integers(0, 255, (size, size)).astype(np.float32), (0, 0), 2.0)
    grey = cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    field = amp * np.exp(-((xx - size * 0.35) ** 2 + (yy - size * 0.35) ** 2) / (2 * (size * 0.12) ** 2))
    moved = cv2.remap(grey, xx - field, yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    bgr = lambda g: cv2.cvtColor(np.clip(g, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)  # noqa: E731
    return bgr(grey), bgr(moved), field


def test_dis_reads_a_known_subpixel_warp() -> None:
    onset, apex, field = warped_pair(1.5)
    m = pair_motion(onset, apex)
    assert m.shape == (3, 112, 112) and m.dtype == np.float32
    peak = field > 1.0
    assert 0.8 < float(np.median(m[0][peak])) < 2.0  # u: to the right, about 1.5 px
    assert abs(float(np.median(m[1][peak]))) < 0.3  # v: no vertical motion
    assert float(m[2][field > 0.3].mean()) > 3 * float(m[2][field < 0.01].mean())  # strain where it deforms
    still = pair_motion(onset, onset)
    assert np.abs(still[:2]).max() < 0.05


def test_training_motion_equals_engine_preprocessing() -> None:
    rng = np.random.default_rng(1)
    on = rng.integers(0, 255, (3, S, S, 3), dtype=np.uint8)
    ap = np.clip(on.astype(int) + rng.integers(-3, 4, on.shape), 0, 255).astype(np.uint8)
    train_side = motion_of(to_tensor(on), to_tensor(ap)).numpy()
    engine_side, apex_in = pair_inputs(on, ap, "motion")
    np.testing.assert_array_equal(train_side, engine_side)
    np.testing.assert_array_equal(apex_in, crops_to_nchw(ap))
    np.testing.assert_array_equal(pair_inputs(on, ap)[0], crops_to_nchw(on))  # other forms: the onset crop


def test_manifest_decides_the_preprocessing() -> None:
    motion = SimpleNamespace(source={"model_config": {"input_form": "motion"}})
    assert input_form(motion) == "motion"
    assert input_form(SimpleNamespace(source={"model_config": {"input_form": "onset_apex"}})) == "onset_apex"
    assert input_form(SimpleNamespace(source={})) == "onset_apex"  # artefacts built before the motion form
    with pytest.raises(ValueError):
        motion_nchw([np.zeros((S, S, 3), np.uint8)], [])


def test_motion_form_trains_exports_and_matches_torch(tmp_path) -> None:
    torch.manual_seed(0)
    c = cfg()
    model = create_model(c)
    onset, apex = torch.rand(4, 3, S, S), torch.rand(4, 3, S, S)
    out = model(onset, apex, with_teacher=True)  # training forward: motion from the onset crops
    out["logits"].sum().backward()
    assert model.transformers["1"].embed.weight.grad.abs().sum() > 0
    model.eval()
    path = export_onnx(model, tmp_path / "m.onnx", S)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    _, a, _ = warped_pair(2.0, S)
    o, _, _ = warped_pair(0.0, S)
    x0, x1 = network_inputs(c, np.stack([o, o]), np.stack([a, o]))
    probs, heat = sess.run(None, {"onset": x0.numpy(), "apex": x1.numpy()})
    with torch.no_grad():
        tp, th = export_module(model)(x0, x1)
    np.testing.assert_allclose(probs, tp.numpy(), atol=1e-5)
    np.testing.assert_allclose(heat, th.numpy(), atol=1e-4)
    assert heat.shape == (2, 4, 6, 6)


@pytest.mark.parametrize("row, changes", ABLATION_ROWS)
def test_table3_rows_run_in_motion_form(row, changes) -> None:
    model = export_module(create_model(cfg(**changes)))
    with torch.no_grad():
        probs, heat = model(torch.randn(2, 3, S, S) * 0.5, torch.rand(2, 3, S, S))
    assert probs.shape == (2, 3) and heat.shape == (2, 4, 6, 6), row
