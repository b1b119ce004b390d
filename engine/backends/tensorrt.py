"""TensorRT backend and plan builder (GPU). UNPROVEN: no session so far had TensorRT on a GPU.

Why these choices:
- cuda-python (not pycuda) for buffers and streams: pycuda does not build on a host without a
  driver, and NVIDIA's own samples moved to cuda-python. Buffers and the stream are created
  inside the engine process (after spawn), never inherited across a fork.
- INT8 is explicit quantisation: the QDQ ONNX from `calibration/` carries the scales, so the
  same artefact builds on TensorRT 10 and 11 (11 removed the implicit INT8 calibrator API).
  Where the runtime offers strongly typed networks, the QDQ model is built strongly typed.
- One optimisation profile: min batch 1, opt batch 1 (the latency case), max batch B.
- The timing cache is persisted next to the plan and reused across builds.
- Plans are tied to a TensorRT version and a GPU; the manifest records both, and a plan that
  does not match this host fails at start with the rebuild command.

Every import of tensorrt / cuda-python is lazy; missing ones raise BackendUnavailable.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from pydantic import Field

from engine.artefact import Artefact, ArtefactError, TensorRTInfo
from engine.backends import BackendUnavailable, check_outputs
from engine.registry import PluginSection


def _trt():
    try:
        import tensorrt as trt
    except ModuleNotFoundError:
        raise BackendUnavailable(
            "the tensorrt backend needs the `tensorrt` package (>=10, from NVIDIA's index, matching the "
            "driver's CUDA); use --backend onnxruntime or torch where it is absent"
        ) from None
    return trt


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ModuleNotFoundError:
        try:
            from cuda import cudart  # older cuda-python layout
        except ModuleNotFoundError:
            raise BackendUnavailable(
                "the tensorrt backend needs cuda-python for buffers and streams: pip install 'mfvan[gpu]'"
            ) from None
    return cudart


def _check(cudart, result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        _, msg = cudart.cudaGetErrorString(err)
        raise BackendUnavailable(f"CUDA error {int(err)}: {msg.decode() if isinstance(msg, bytes) else msg}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(slug of the GPU name, compute capability like '9.0') of `device`."""
    cudart = _cudart()
    props = _check(cudart, cudart.cudaGetDeviceProperties(device))
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    name = name.split("\x00", 1)[0]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"
    return slug, f"{props.major}.{props.minor}"


def plan_name(model: str, max_batch: int, gpu: str, precision: str) -> str:
    return f"{model}_b{max_batch}_{gpu}_{precision}.engine"


def build_plan(
    onnx_path: Path,
    out_dir: Path,
    *,
    model_name: str,
    precision: str,
    max_batch: int,
    crop_size: int,
    input_names: tuple[str, ...] = ("onset", "apex"),
    timing_cache: Path | None = None,
    workspace_mb: int = 1024,
) -> TensorRTInfo:
    """Serialize a TensorRT plan from `onnx_path` (the QDQ model for int8) into `out_dir`."""
    trt = _trt()
    gpu, cc = gpu_identity()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if hasattr(creation, "EXPLICIT_BATCH") and int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    strongly_typed = precision == "int8" and hasattr(creation, "STRONGLY_TYPED")
    if strongly_typed:
        flags |= 1 << int(creation.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtefactError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "fp16":
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise ArtefactError(
                f"TensorRT {trt.__version__} has no FP16 builder flag (weak typing removed); build --precision int8 "
                "(QDQ, strongly typed) or fp32"
            )
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.INT8)  # TensorRT < 10: explicit QDQ still needs the flag
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    one = (1, 3, crop_size, crop_size)
    for name in input_names:
        profile.set_shape(name, one, one, (max_batch, 3, crop_size, crop_size))
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtefactError(f"TensorRT failed to build a {precision} plan from {onnx_path} (see the log above)")
    name = plan_name(model_name, max_batch, gpu, precision)
    (out_dir / name).write_bytes(bytes(serialized))
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return TensorRTInfo(
        version=trt.__version__, gpu=gpu, compute_capability=cc, plan=name, max_batch=max_batch, precision=precision
    )


class TensorRTConfig(PluginSection):
    """`engine.backend: {type: tensorrt, device: cuda:1}`; the plan fixes precision and batch."""

    device: str | None = Field(None, pattern=r"^(auto|cuda:\d+)$", description="GPU: cuda:N; auto/null = the first")


class TensorRTBackend:
    name = "tensorrt"
    config = TensorRTConfig

    def __init__(self, artefact: Artefact, precision: str = "fp16", *, threads: int = 2, device: str = "auto"):
        # threads: unused (the GPU runs the graph); device "cuda:N" picks the GPU, "auto" the first
        device_index = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
        trt = _trt()
        cudart = _cudart()
        self.trt, self.cudart = trt, cudart
        info = artefact.manifest.tensorrt
        hint = (
            f"rebuild it on this host with `mfvan-build-engine --backend tensorrt --precision {precision} "
            f"--out {artefact.folder}`"
        )
        if info is None or info.precision != precision or not artefact.has(info.plan):
            raise ArtefactError(f"{artefact.folder} has no TensorRT {precision} plan; {hint}")
        gpu, cc = gpu_identity(device_index)
        if info.version != trt.__version__ or info.compute_capability != cc:
            raise ArtefactError(
                f"{artefact.folder}/{info.plan} was built with TensorRT {info.version} for compute capability "
                f"{info.compute_capability}; this host has TensorRT {trt.__version__} on {gpu} ({cc}); {hint}"
            )
        _check(cudart, cudart.cudaSetDevice(device_index))
        self.artefact = artefact
        self.precision = precision
        self.device = f"cuda:{device_index} ({gpu})"
        self.max_batch = info.max_batch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(artefact.path(info.plan).read_bytes())
        if self.engine is None:
            raise ArtefactError(f"TensorRT cannot deserialize {info.plan}; {hint}")
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart, cudart.cudaStreamCreate())
        self.tensors: dict[str, tuple[bool, np.dtype, tuple[int, ...], int]] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            shape = tuple(int(d) for d in self.engine.get_tensor_shape(name))[1:]  # drop the batch axis
            nbytes = self.max_batch * int(np.prod(shape)) * dtype.itemsize
            ptr = _check(cudart, cudart.cudaMalloc(nbytes))
            self.tensors[name] = (is_input, dtype, shape, ptr)
            self.context.set_tensor_address(name, ptr)

    def infer(self, onset: np.ndarray, apex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cudart = self.cudart
        batch = onset.shape[0]
        if batch > self.max_batch:
            raise ValueError(f"batch {batch} > plan's max batch {self.max_batch}")
        names = self.artefact.manifest.input.names
        host_in = {names[0]: onset, names[1]: apex}
        outputs: dict[str, np.ndarray] = {}
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, (is_input, dtype, _shape, ptr) in self.tensors.items():
            if is_input:
                arr = np.ascontiguousarray(host_in[name], dtype=dtype)
                self.context.set_input_shape(name, arr.shape)
                _check(cudart, cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, self.stream))
                host_in[name] = arr  # keep alive until the stream syncs
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        for name, (is_input, dtype, shape, ptr) in self.tensors.items():
            if not is_input:
                out = np.empty((batch, *shape), dtype=dtype)
                _check(cudart, cudart.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, d2h, self.stream))
                outputs[name] = out
        _check(cudart, cudart.cudaStreamSynchronize(self.stream))
        probs, heat = (outputs[n].astype(np.float32) for n in self.artefact.manifest.output.names)
        check_outputs(self.artefact, probs, heat, batch)
        return probs, heat

    def close(self) -> None:
        for _, _, _, ptr in self.tensors.values():
            self.cudart.cudaFree(ptr)
        self.tensors.clear()
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None
