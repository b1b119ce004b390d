"""torch backend: the reference implementation, and the GPU path provable without TensorRT.

It runs the checkpoint copied into the artefact (`model.ckpt`) through the trainer's own
network (`trainer.checkpoint.load_model` + `export_module`), so it is the ground truth the
other backends are compared to. On CUDA it runs FP16 when asked and replays CUDA graphs for
each batch size it has seen (shapes are static per size); on the CPU it is plain eager FP32,
the "torch eager" column of the benchmark.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from engine.artefact import CHECKPOINT, Artefact, ArtefactError, rebuild_hint
from engine.backends import BackendUnavailable
from engine.registry import PluginSection


def _torch():
    try:
        import torch
    except ModuleNotFoundError:
        raise BackendUnavailable("the torch backend needs torch: pip install 'mfvan[train]'") from None
    return torch


def load_module(artefact: Artefact):
    """The export module of the artefact's checkpoint, in eval mode on the CPU."""
    _torch()
    if not artefact.has(CHECKPOINT):
        raise ArtefactError(f"{artefact.folder} holds no {CHECKPOINT} for the torch backend; {rebuild_hint(artefact.folder)}")
    try:
        from trainer.checkpoint import load_model
        from trainer.models import export_module
    except ModuleNotFoundError as exc:
        raise BackendUnavailable(f"the torch backend needs the trainer package ({exc.name} missing)") from None
    model, labels, _cfg = load_model(artefact.path(CHECKPOINT))
    if tuple(labels) != tuple(artefact.labels):
        raise ArtefactError(f"{artefact.folder}: checkpoint labels {labels} != manifest {list(artefact.labels)}")
    module = export_module(model)
    module.eval()
    return module


class TorchConfig(PluginSection):
    """`engine.backend: {type: torch, device: cpu, threads: 2}` (the reference path)."""

    device: str | None = Field(None, pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                               description="cpu, cuda or cuda:N; auto/null = CUDA when available")
    threads: int | None = Field(None, ge=1, le=256, description="CPU threads; null = engine.intra_op_threads")


class TorchBackend:
    name = "torch"
    config = TorchConfig

    def __init__(self, artefact: Artefact, precision: str = "fp32", *, threads: int = 2, device: str = "auto"):
        torch = _torch()
        self.torch = torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("torch has no CUDA device here (CPU build or no driver)")
        if precision == "int8":
            raise BackendUnavailable("the torch backend runs fp32/fp16; INT8 runs on onnxruntime or tensorrt")
        if precision == "fp16" and not device.startswith("cuda"):
            raise BackendUnavailable("torch fp16 needs CUDA (CPU half kernels are slower than fp32)")
        if device == "cpu":
            torch.set_num_threads(threads)
        self.artefact = artefact
        self.precision = precision
        self.device = device
        self.max_batch = artefact.manifest.input.max_batch
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.module = load_module(artefact).to(device=device, dtype=self.dtype)
        self.use_graphs = device.startswith("cuda")
        self._graphs: dict[int, tuple] = {}

    def _graph(self, batch: int):
        """Capture one CUDA graph per batch size: static shapes replay without launch overhead."""
        torch = self.torch
        if batch not in self._graphs:
            s = self.artefact.crop_size
            x_on = torch.zeros((batch, 3, s, s), device=self.device, dtype=self.dtype)
            x_ap = torch.zeros_like(x_on)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(3):  # warm up kernels/allocator before capture
                    self.module(x_on, x_ap)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                probs, heat = self.module(x_on, x_ap)
            self._graphs[batch] = (graph, x_on, x_ap, probs, heat)
        return self._graphs[batch]

    def infer(self, onset: np.ndarray, apex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        if self.use_graphs:
            graph, x_on, x_ap, probs, heat = self._graph(onset.shape[0])
            x_on.copy_(torch.from_numpy(onset), non_blocking=False)
            x_ap.copy_(torch.from_numpy(apex), non_blocking=False)
            graph.replay()
            return probs.float().cpu().numpy(), heat.float().cpu().numpy()
        with torch.inference_mode():
            probs, heat = self.module(
                torch.from_numpy(onset).to(self.device, self.dtype), torch.from_numpy(apex).to(self.device, self.dtype)
            )
        return probs.float().cpu().numpy(), heat.float().cpu().numpy()

    def close(self) -> None:
        self._graphs.clear()
        self.module = None
