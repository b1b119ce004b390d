"""Config of `mfvan-synth` (the synthetic micro-expression corpus)."""

from __future__ import annotations

from pydantic import Field

from engine.config.base import Section


class SynthConfig(Section):
    subjects: int = Field(31, ge=1, description="identities, in the fixed order of trainer/synth/identities.py")
    first_subject: int = Field(1, ge=1, description="first identity (1-based): a corpus of identities held out from another starts past its last one")
    clips_per_subject: int = Field(2, ge=1)
    seed: int = 0
    workers: int = Field(2, ge=1, description="render processes")
    fps: float = Field(200.0, gt=0)
    face_px: float = Field(220.0, ge=64, le=400, description="face box width in the 640x480 frame")
    micro_per_clip: int = Field(5, ge=0)
    micro_ms: tuple[float, float] = (65.0, 500.0)
    micro_px: tuple[float, float] = (1.0, 4.0)
    macro_prob: float = Field(0.2, ge=0, le=1, description="chance a clip holds one macro-expression")
    macro_ms: tuple[float, float] = (800.0, 3000.0)
    macro_px: tuple[float, float] = (6.0, 16.0)
    blinks_per_clip: int = Field(1, ge=0)
    head_moves_per_clip: int = Field(1, ge=0)
    gap_ms: tuple[float, float] = (150.0, 300.0)
    noise_sigma: tuple[float, float] = (1.0, 3.0)
    drift_px: tuple[float, float] = Field((1.5, 5.0), description="slow head drift amplitude per clip")
    rotation_deg: tuple[float, float] = Field((0.3, 1.5), description="slow in-plane rotation amplitude per clip")
    flicker: tuple[float, float] = Field((0.004, 0.02), description="brightness flicker (fraction of the grey level)")
    flicker_hz: tuple[float, float] = (0.3, 3.0)
    lead_ms: float = Field(100.0, ge=0, description="neutral time before the first event")
    empty_clip_prob: float = Field(0.0, ge=0, le=1, description="chance a clip holds no micro or macro event (blinks and head motion only): false positives per minute")
