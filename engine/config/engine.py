"""Schema of `mfvan-engined` (and of the engine embedded in `mfvan-streamd`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.config.base import Section, Security


class BatchingConfig(Section):
    max_batch: int = Field(8, ge=1, le=1024, description="at most this many pairs per inference")
    max_wait_ms: float = Field(2.0, ge=0, le=1000, description="wait at most this long to fill a batch")


class EngineConfig(Section):
    artefact: str = Field("", description="engine artefact folder (mfvan-build-engine --out); empty = bundled demo")
    backend: Literal["auto", "onnxruntime", "tensorrt", "torch"] = "auto"
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    intra_op_threads: int = Field(2, ge=1, le=256)
    pair_endpoint: str = Field("tcp://127.0.0.1:5555", description="PULL: (onset, apex) pairs arrive here")
    pub_endpoint: str = Field("tcp://127.0.0.1:5556", description="PUB: results, macro events, status, heartbeats")
    bind: bool = Field(True, description="bind the endpoints (else connect)")
    engine_id: str = ""
    heartbeat_s: float = Field(1.0, gt=0, le=60)
    pub_hwm: int = Field(1000, ge=1, description="messages queued per slow subscriber before dropping")
    heatmap_dtype: Literal["uint8", "float16"] = "uint8"
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics; 0 = off")
    batching: BatchingConfig = BatchingConfig()
    security: Security = Security()
