"""Inference backends behind one interface: `load_backend(artefact, ...)` → `infer(onset, apex)`.

Backends are plugins found by name in the `mfvan.backends` entry-point group (pyproject.toml),
loaded only when chosen: the engine runtime never imports the package that provides one, so the
torch backend lives where torch lives (`trainer.torch_backend`) and a third-party package can
add a backend without touching this one.

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
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Protocol

import numpy as np

from engine.artefact import Artefact, ArtefactError

ENTRY_POINT_GROUP = "mfvan.backends"


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


@cache
def registered() -> dict[str, EntryPoint]:
    """Backend name → entry point (not yet imported), in the order the names sort."""
    return {ep.name: ep for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)}


def backend_class(name: str) -> type:
    """The class registered as `name`, imported now (its runtime still imports lazily)."""
    eps = registered()
    if name not in eps:
        known = ", ".join(eps) or "none: is mfvan installed (pip install -e .)?"
        raise ArtefactError(f"unknown backend {name!r}; choose from auto, {known}")
    try:
        return eps[name].load()
    except ModuleNotFoundError as exc:
        raise BackendUnavailable(f"the {name} backend needs {exc.name!r}, which is not installed") from None


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
    return backend_class(backend)(artefact, precision, threads=threads, device=device)


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
