"""ONNX export of the inference contract (inputs onset/apex, outputs probs/heatmaps).

WHY the TorchScript exporter (`dynamo=False`): the graph is static apart from the batch axis,
and the legacy exporter gives a plain opset-17 graph that ONNX Runtime and TensorRT both take,
without the dynamo exporter's extra dependencies and slower export.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn

from trainer.models.mfvan import export_module

OPSET = 17


def export_onnx(model: nn.Module, path: str | Path, crop_size: int, opset: int = OPSET) -> Path:
    """Write `model` (MFVAN or its export wrapper) to `path`; dynamic batch axis."""
    module = export_module(model)
    dummy = torch.rand(2, 3, crop_size, crop_size)
    path = Path(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (dummy, dummy.clone()),
            str(path),
            input_names=["onset", "apex"],
            output_names=["probs", "heatmaps"],
            dynamic_axes={"onset": {0: "batch"}, "apex": {0: "batch"}, "probs": {0: "batch"}, "heatmaps": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return path
