"""MediaPipe FaceMesh (0.10.21, the last release with the legacy solution bundled), optional.

Why optional: mediapipe pins numpy < 2 and protobuf < 5, which the rest of the stack does not
want; install it in its own environment if you need its 468-point mesh. The five points the
aligner uses are taken from the mesh: eye centres (corners 33/133 and 362/263), nose tip (1)
and mouth corners (61, 291), in image-left/right order like RetinaFace's.
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from engine.registry import PluginSection
from streamer.faces.types import DetectorUnavailable, Face

_FIVE = ((33, 133), (362, 263), (1,), (61,), (291,))


class MediaPipeConfig(PluginSection):
    """`faces.detector: {type: mediapipe, min_confidence: 0.5}`."""

    max_faces: int | None = Field(None, ge=1, le=64, description="faces the mesh tracks; null = faces.max_faces")
    min_confidence: float = Field(0.5, ge=0, le=1, description="FaceMesh min_detection_confidence")


class MediaPipeDetector:
    config = MediaPipeConfig

    @classmethod
    def from_config(cls, cfg: MediaPipeConfig, *, threads: int = 1) -> MediaPipeDetector:
        return cls(cfg.max_faces or 8, cfg.min_confidence)

    def __init__(self, max_faces: int = 8, min_confidence: float = 0.5):
        try:
            import mediapipe as mp
        except ImportError as exc:
            raise DetectorUnavailable("faces.detector mediapipe needs `pip install mediapipe==0.10.21` "
                                      "(numpy<2, protobuf<5: best in its own venv)") from exc
        self.mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=max_faces,
                                                    min_detection_confidence=min_confidence)

    def detect(self, frame_bgr: np.ndarray) -> list[Face]:
        h, w = frame_bgr.shape[:2]
        res = self.mesh.process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        faces = []
        for lm in res.multi_face_landmarks or []:
            pts = np.array([(p.x * w, p.y * h) for p in lm.landmark], np.float32)
            five = np.stack([pts[list(idx)].mean(axis=0) for idx in _FIVE]).astype(np.float32)
            box = np.array([*pts.min(axis=0), *pts.max(axis=0)], np.float32)
            faces.append(Face(box, five, 1.0))
        return faces
