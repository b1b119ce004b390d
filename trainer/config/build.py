"""Schema of `mfvan-build-engine` (the trainer builds artefacts: it is where torch lives)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.backends import BACKENDS
from engine.config.base import Section


class BuildConfig(Section):
    """Schema of `mfvan-build-engine` (every field is also a command-line flag)."""

    checkpoint: str = Field("", description="trainer checkpoint; empty = the bundled demo checkpoint")
    backend: BACKENDS.name_type() = Field("onnxruntime", description="the backend the artefact is built for")  # type: ignore[valid-type]
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    out: str = Field("", description="artefact folder to write")
    max_batch: int = Field(8, ge=1, le=1024, description="largest batch the artefact serves (TensorRT profile max)")
    opset: int = Field(17, ge=17, le=23)
    calib: str = Field("", description="calibration pairs (.npz / folder of .npz / corpus folder) for int8")
    calib_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    calib_max_pairs: int = Field(512, ge=0, description="0 = all")
    held_out_fraction: float = Field(0.25, gt=0, lt=1, description="share of subjects kept out of calibration for the INT8 report")
    min_held_out: int = Field(10, ge=1, description="fewest held-out pairs an INT8 accuracy report may rest on")
    force: bool = Field(False, description="finish an int8 build without an accuracy report")
    atol: float = Field(1e-4, gt=0, description="max |ONNX - torch| accepted at export")
