"""One check for every trainer test that exports a model: ONNX Runtime must give what torch gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from trainer.export import export_onnx
from trainer.models import export_module, network_inputs


def assert_onnx_matches_torch(model: torch.nn.Module, cfg, size: int, tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Export `model` (put in eval mode), run two near-identical crop pairs through ORT and the
    torch export module, assert they agree; returns ORT's (probs, heatmaps) for shape checks."""
    model.eval()
    path = export_onnx(model, tmp_path / "m.onnx", size)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    on = rng.integers(0, 255, (2, size, size, 3), dtype=np.uint8)
    ap = np.clip(on.astype(int) + rng.integers(-4, 5, on.shape), 0, 255).astype(np.uint8)
    x0, x1 = network_inputs(cfg, on, ap)
    probs, heat = sess.run(None, {"onset": x0.numpy(), "apex": x1.numpy()})
    with torch.no_grad():
        tp, th = export_module(model)(x0, x1)
    np.testing.assert_allclose(probs, tp.numpy(), atol=1e-5)
    np.testing.assert_allclose(heat, th.numpy(), atol=1e-4)
    return probs, heat
