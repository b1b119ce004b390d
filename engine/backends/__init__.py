"""Inference backends behind one interface: `load_backend(artefact, ...)` → `infer(onset, apex)`.

Backends are plugins in the `mfvan.backends` registry (engine.registry: entry points in
pyproject.toml), imported only when chosen: the engine runtime never imports the package that
provides one, so the torch backend lives where torch lives (`trainer.torch_backend`) and a
third-party package adds a backend with its module and one entry-point line.

A backend class is built as `cls(artefact, precision, **section.options())`: its `config`
section (a `PluginSection`, the `engine.backend: {type: NAME, ...}` of a config file) names
its own options. Shared values: `load_backend`'s `threads` (from `engine.intra_op_threads`)
and `device` fill the options of those names that the section leaves unset (None).

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
from engine.registry import PluginSection, Registry, UnknownPlugin

ENTRY_POINT_GROUP = "mfvan.backends"


class BackendUnavailable(RuntimeError):
    """The runtime is not installed or has no device here; the message names what is missing."""


class AutoBackend(PluginSection):
    """`backend: auto`: a TensorRT plan of the asked precision when TensorRT is importable, else
    ONNX Runtime; the chosen backend runs with its default options and the shared values."""


BACKENDS: Registry[type] = Registry(
    "backend", ENTRY_POINT_GROUP, builtin={"auto": AutoBackend}, unavailable=BackendUnavailable
)


class Backend(Protocol):
    name: str  # the registered name, e.g. "onnxruntime"
    precision: str
    device: str  # e.g. "CPUExecutionProvider", "cuda:0", "cpu"
    max_batch: int

    def infer(self, onset: np.ndarray, apex: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def backend_class(name: str) -> type:
    """The class registered as `name`, imported now (its runtime still imports lazily)."""
    try:
        return BACKENDS.load(name)
    except UnknownPlugin as exc:
        raise ArtefactError(str(exc)) from None


def load_backend(
    artefact: Artefact,
    backend: str | PluginSection = "auto",
    precision: str = "fp32",
    *,
    threads: int = 2,
    device: str = "auto",
) -> Backend:
    """Open `artefact` with the named backend, or the backend a config section chooses.

    "auto": a TensorRT plan of this precision when TensorRT is importable, else ONNX Runtime.
    An unknown name is an ArtefactError listing the registered ones.
    """
    if isinstance(backend, str):
        try:
            backend = BACKENDS.make(backend)
        except UnknownPlugin as exc:
            raise ArtefactError(str(exc)) from None
    if backend.type == "auto":
        plans = [
            n for n in artefact.files_with_role("tensorrt-plan") if artefact.manifest.files[n].precision == precision
        ]
        backend = BACKENDS.make("tensorrt" if plans and installed("tensorrt") else "onnxruntime")
    cls = backend_class(backend.type)
    return cls(artefact, precision, **backend.resolved(threads=threads, device=device).options())


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
