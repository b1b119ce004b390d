"""MFVAN model registry: `create_model(cfg)`, `export_module(model)`, `export_onnx(...)`.

Importing this package registers every model (see `registry.py`).
"""

from trainer.models.mfvan import (
    HEATMAP_CHANNELS,
    MFVAN,
    ExportModule,
    export_module,
    identity_removal_reaches_logits,
    network_inputs,
)
from trainer.models.registry import create_model, list_models, register_model

__all__ = [
    "HEATMAP_CHANNELS",
    "MFVAN",
    "ExportModule",
    "create_model",
    "export_module",
    "identity_removal_reaches_logits",
    "list_models",
    "network_inputs",
    "register_model",
]
