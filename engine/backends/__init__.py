"""Inference backends behind one interface: `load_backend(artefact, ...)` → `infer(onset, apex)`.

Why one interface: the server, the benchmark and the parity tests never know which runtime
they hold, so a backend can be swapped by config and compared on the same inputs. Each
backend module imports its runtime lazily: a host without torch/TensorRT/cuda-python can still
load this package, and asking for a missing runtime is a BackendUnavailable that names the
package to install.

Inputs: float32 (B, 3, S, S) RGB [0, 1] onset and apex batches (engine.tensors.crops_to_nchw).
Outputs: float32 probs (B, C) and heatmaps (B, 4, g, g) as numpy arrays.
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

import numpy as np

from engine.artefact import Artefact, ArtefactError

BACKENDS = ("onnxruntime", "tensorrt", "torch")


class BackendUnavailable(RuntimeError):
    """The runtime is not installed or has no device here; the message names what is missing."""


class Backend(Protocol):
    name: str  # "onnxruntime" | "tensorrt" | "torch"
    precision: str
    device: str  # e.g. "CPUExecutionProvider", "cuda:0", "cpu"
    max_batch: int

    def infer(self, onset: np.ndarray, apex: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def load_backend(
    artefact: Artefact,
    backend: str = "auto",
    precision: str = "fp32",
    *,
    threads: int = 2,
    device: str = "auto",
) -> Backend:
    """Open `artefact` with the named backend ("auto": a TensorRT plan of this precision when
    TensorRT is importable, else ONNX Runtime)."""
    if backend == "auto":
        plans = [
            n for n in artefact.files_with_role("tensorrt-plan") if artefact.manifest.files[n].precision == precision
        ]
        backend = "tensorrt" if plans and installed("tensorrt") else "onnxruntime"
    if backend == "onnxruntime":
        from engine.backends.ort import OrtBackend

        return OrtBackend(artefact, precision, threads=threads)
    if backend == "torch":
        from engine.backends.torch_backend import TorchBackend

        return TorchBackend(artefact, precision, threads=threads, device=device)
    if backend == "tensorrt":
        from engine.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(artefact, precision)
    raise ArtefactError(f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")


def check_outputs(artefact: Artefact, probs: np.ndarray, heatmaps: np.ndarray, batch: int) -> None:
    """Shapes a backend returned must match the manifest (catches a mismatched plan/model)."""
    m = artefact.manifest
    want_p = (batch, m.output.num_classes)
    want_h = (batch, len(m.output.heatmap_names), m.output.heatmap_grid, m.output.heatmap_grid)
    if probs.shape != want_p or heatmaps.shape != want_h:
        raise ArtefactError(
            f"{artefact.folder}: model outputs {probs.shape}/{heatmaps.shape}, manifest says {want_p}/{want_h}; "
            "the model file does not belong to this manifest"
        )
