"""ONNX Runtime backend: the embedded CPU default, and GPU through the TensorRT/CUDA EPs.

Providers are tried in the order TensorRT EP → CUDA EP → CPU EP, keeping whichever this
onnxruntime build has. FP32 runs the graph-optimised model, INT8 the QDQ model from
`calibration/`; FP16 needs a GPU EP (the CPU EP has no FP16 kernels worth using).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pydantic import Field

from engine.artefact import ONNX_FP32, ONNX_INT8, ONNX_OPT, Artefact, ArtefactError, rebuild_hint
from engine.backends import BackendUnavailable, check_outputs
from engine.registry import PluginSection

PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def providers_for(precision: str, cache_dir: Path | None = None) -> list[str | tuple[str, dict]]:
    available = set(ort.get_available_providers())
    out: list[str | tuple[str, dict]] = []
    for name in PREFERRED:
        if name not in available:
            continue
        if name == "TensorrtExecutionProvider":
            opts: dict[str, object] = {
                "trt_fp16_enable": precision == "fp16",
                "trt_int8_enable": precision == "int8",
                "trt_engine_cache_enable": cache_dir is not None,
                "trt_timing_cache_enable": cache_dir is not None,
            }
            if cache_dir is not None:
                cache_dir.mkdir(parents=True, exist_ok=True)
                opts["trt_engine_cache_path"] = str(cache_dir)
                opts["trt_timing_cache_path"] = str(cache_dir)
            out.append((name, opts))
        else:
            out.append(name)
    return out


def model_file(artefact: Artefact, precision: str) -> Path:
    if precision == "int8":
        if not artefact.has(ONNX_INT8):
            raise ArtefactError(
                f"{artefact.folder} has no INT8 model ({ONNX_INT8}); {rebuild_hint(artefact.folder)}"
            )
        return artefact.path(ONNX_INT8)
    return artefact.path(ONNX_OPT if artefact.has(ONNX_OPT) else ONNX_FP32)


def session_options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


def check_io(sess: ort.InferenceSession, artefact: Artefact, path: Path) -> None:
    """The model's inputs/outputs must be what the manifest (and so the server) feeds."""
    spec = artefact.manifest.input
    s = spec.crop_size
    ins = {i.name: i for i in sess.get_inputs()}
    outs = [o.name for o in sess.get_outputs()]
    problems = []
    if sorted(ins) != sorted(spec.names):
        problems.append(f"inputs {sorted(ins)} != {sorted(spec.names)}")
    else:
        for name in spec.names:
            shape = ins[name].shape
            if len(shape) != 4 or list(shape[1:]) != [3, s, s] or ins[name].type != "tensor(float)":
                problems.append(f"input {name} is {ins[name].type} {shape}, want float [B, 3, {s}, {s}]")
    if sorted(outs) != sorted(artefact.manifest.output.names):
        problems.append(f"outputs {outs} != {list(artefact.manifest.output.names)}")
    if problems:
        raise ArtefactError(f"{path}: {'; '.join(problems)}; {rebuild_hint(artefact.folder)}")


class OrtConfig(PluginSection):
    """`engine.backend: {type: onnxruntime, ...}`; the execution providers come from the build."""

    threads: int | None = Field(None, ge=1, le=256, description="intra-op threads; null = engine.intra_op_threads")


class OrtBackend:
    name = "onnxruntime"
    config = OrtConfig

    def __init__(self, artefact: Artefact, precision: str = "fp32", *, threads: int = 2, device: str = "auto"):
        # device: the execution providers are chosen below from what this build of ORT offers
        if precision == "fp16" and not {"TensorrtExecutionProvider", "CUDAExecutionProvider"} & set(
            ort.get_available_providers()
        ):
            raise BackendUnavailable(
                "onnxruntime fp16 needs the TensorRT or CUDA execution provider (pip install onnxruntime-gpu); "
                "this build has only " + ", ".join(ort.get_available_providers())
            )
        self.artefact = artefact
        self.precision = precision
        self.max_batch = artefact.manifest.input.max_batch
        path = model_file(artefact, precision)
        cache = Path(os.environ.get("MFVAN_CACHE", Path.home() / ".cache" / "mfvan")) / "ort-trt"
        providers = providers_for(precision, cache)
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ArtefactError(f"{path}: onnxruntime cannot load it ({str(exc)[:300]}); {rebuild_hint(artefact.folder)}") from None
        self.device = self.session.get_providers()[0]
        check_io(self.session, artefact, path)
        self._out = list(artefact.manifest.output.names)
        self._in = artefact.manifest.input.names

    def infer(self, onset: np.ndarray, apex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, heatmaps = self.session.run(self._out, {self._in[0]: onset, self._in[1]: apex})
        return probs, heatmaps

    def warmup(self) -> None:
        s = self.artefact.crop_size
        x = np.zeros((1, 3, s, s), np.float32)
        probs, heat = self.infer(x, x)
        check_outputs(self.artefact, probs, heat, 1)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
