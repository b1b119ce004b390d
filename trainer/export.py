"""Checkpoint → ONNX (the common source of every backend) and the ORT graph-optimised copy.

Why the TorchScript exporter (`dynamo=False`): the network is static apart from the batch
axis, and the legacy exporter gives a plain opset-17 graph that ONNX Runtime, its quantiser
and TensorRT all take. The batch axis is dynamic (1..B): ONNX Runtime runs any batch, and
TensorRT gets an optimisation profile over it.

The export is checked numerically against torch before anything is written to an artefact,
so a broken export never reaches a server.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

OPSET = 17
INPUTS = ("onset", "apex")
OUTPUTS = ("probs", "heatmaps")


class ExportError(RuntimeError):
    """The ONNX export failed or disagrees with torch."""


def export_onnx(model, path: str | Path, crop_size: int, opset: int = OPSET) -> Path:
    """Write `model` (MFVAN or its export wrapper: forward(onset, apex) -> (probs, heatmaps))
    to `path` with a dynamic batch axis, then check the graph before anything else reads it."""
    if opset < 17:
        raise ExportError(f"opset {opset} < 17 (LayerNormalization and friends need 17)")
    import onnx
    import torch

    from trainer.models import export_module

    module = export_module(model)
    dummy = torch.rand(2, 3, crop_size, crop_size)
    path = Path(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (dummy, dummy.clone()),
            str(path),
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes={name: {0: "batch"} for name in (*INPUTS, *OUTPUTS)},
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    return path


def optimise_onnx(src: Path, dst: Path) -> Path:
    """ONNX Runtime's offline graph optimisation at the portable level (basic: constant
    folding, redundant node removal). Extended/all-level fusions are hardware-specific, so
    they are left to session creation on the serving host."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return dst


def torch_reference(module, onset: np.ndarray, apex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    with torch.inference_mode():
        p, h = module(torch.from_numpy(onset), torch.from_numpy(apex))
    return p.numpy(), h.numpy()


def check_against_torch(
    module, onnx_path: Path, crop_size: int, *, batch: int = 3, atol: float = 1e-4, seed: int = 0
) -> dict[str, float]:
    """Max |ORT − torch| on random inputs at batch 1 and `batch`; raise if above `atol`."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = {"probs": 0.0, "heatmaps": 0.0}
    for b in (1, batch):
        onset = rng.random((b, 3, crop_size, crop_size), dtype=np.float32)
        apex = np.clip(onset + rng.normal(0, 0.02, onset.shape).astype(np.float32), 0, 1)
        ref = torch_reference(module, onset, apex)
        got = sess.run(list(OUTPUTS), {"onset": onset, "apex": apex})
        for name, r, g in zip(OUTPUTS, ref, got, strict=True):
            if r.shape != g.shape:
                raise ExportError(f"{onnx_path.name}: {name} shape {g.shape} != torch {r.shape}")
            worst[name] = max(worst[name], float(np.abs(r - g).max()))
    if max(worst.values()) > atol:
        raise ExportError(f"{onnx_path.name} disagrees with torch: max |diff| {worst} > {atol}")
    return worst
