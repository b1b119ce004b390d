"""Schema of `mfvan-engined` (and of the engine embedded in `mfvan-streamd`).

`backend` is one of the registered backends (engine.backends.BACKENDS): a bare name
(`backend: onnxruntime`, `backend: auto`) or that backend's own section
(`backend: {type: tensorrt, device: cuda:1}`). Shared-field rule: `intra_op_threads` is the
thread count of every CPU backend; a backend section's own `threads` overrides it when set.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from engine.backends import BACKENDS
from engine.config.base import Endpoint, Section
from engine.registry import PluginSection
from engine.wire.security import Security

BackendName = BACKENDS.name_type()


class BatchingConfig(Section):
    max_batch: int = Field(8, ge=1, le=1024, description="at most this many pairs per inference")
    max_wait_ms: float = Field(0.0, ge=0, le=1000, description="wait at most this long to fill a batch; 0 = batch "
                               "what is already queued (lowest latency; under load batches still fill while the "
                               "previous one runs)")


class EngineConfig(Section):
    artefact: str = Field("", description="engine artefact folder (mfvan-build-engine --out); empty = bundled demo")
    backend: Annotated[PluginSection, BACKENDS.field()] = Field(
        "auto", description="a backend name or {type: name, its options...}; auto = TensorRT when a plan "
        "and TensorRT are here, else onnxruntime"
    )
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    intra_op_threads: int = Field(2, ge=1, le=256)
    pair_endpoint: Endpoint = Field("tcp://127.0.0.1:5555", description="PULL: (onset, apex) pairs arrive here")
    pub_endpoint: Endpoint = Field("tcp://127.0.0.1:5556", description="PUB: results, macro events, status, heartbeats")
    bind: bool = Field(True, description="bind the endpoints (else connect)")
    engine_id: str = ""
    heartbeat_s: float = Field(1.0, gt=0, le=60)
    pub_hwm: int = Field(1000, ge=1, description="messages queued per slow subscriber before dropping")
    pub_nodrop: bool = Field(
        False,
        description="XPUB_NODROP: a full subscriber queue refuses the message for EVERY subscriber and the "
        "engine counts it (dropped{reason=pub_full}); false = a slow subscriber loses only its own "
        "messages, dropped inside libzmq where the engine cannot count them",
    )
    heatmap_dtype: Literal["uint8", "float16"] = "uint8"
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics; 0 = off")
    batching: BatchingConfig = BatchingConfig()
    security: Security = Security()


class BenchConfig(Section):
    """Schema of `mfvan-bench engine`."""

    engine: str = Field("", description="artefact folder; empty = the bundled demo artefact")
    backends: list[BackendName] = Field(  # type: ignore[valid-type]
        default_factory=BACKENDS.plugins, description="measured when available; default every registered one"
    )
    precisions: list[Literal["fp32", "fp16", "int8"]] = Field(default_factory=lambda: ["fp32", "fp16", "int8"])
    batch: int = Field(1, ge=1, le=1024)
    threads: int = Field(2, ge=1, le=256)
    iters: int = Field(300, ge=1)
    warmup: int = Field(20, ge=0)
    torch_iters: int = Field(50, ge=1, description="torch eager is slow; fewer iterations keep the run short")
