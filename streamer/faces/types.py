"""A detected face: box, five landmarks, score. The unit every face backend returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DetectorUnavailable(RuntimeError):
    """A face backend's package or model files are missing; the message says what to install."""


@dataclass(frozen=True)
class Face:
    box: np.ndarray  # (4,) float32 x0, y0, x1, y1 in frame pixels
    landmarks: np.ndarray  # (5, 2) float32: left eye, right eye, nose, left mouth, right mouth (image left/right)
    score: float

    @property
    def size(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))
