"""Similarity alignment of a face to a canonical five-point template.

A window's transform is estimated once from its first frame's landmarks and applied to every
frame of the window, so head motion inside the window stays visible as such and is not
re-normalised away per frame (DESIGN §3).
"""

from __future__ import annotations

import cv2
import numpy as np

# ArcFace's 112x112 five-point template (eyes, nose, mouth corners), used at any crop size.
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def template(crop_size: int) -> np.ndarray:
    return TEMPLATE_112 * (crop_size / 112.0)


def similarity_transform(landmarks: np.ndarray, crop_size: int) -> np.ndarray:
    """2x3 matrix mapping frame pixels to crop pixels (rotation, uniform scale, translation)."""
    src = np.asarray(landmarks, np.float32).reshape(-1, 2)
    if src.shape[0] != 5 or not np.isfinite(src).all():
        raise ValueError(f"need 5 finite landmarks, got {src.shape}")
    matrix, _ = cv2.estimateAffinePartial2D(src, template(crop_size), method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("degenerate landmarks: no similarity transform")
    return matrix.astype(np.float32)


def warp(frame: np.ndarray, matrix: np.ndarray, crop_size: int) -> np.ndarray:
    return cv2.warpAffine(frame, matrix, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def align(frame: np.ndarray, landmarks: np.ndarray, crop_size: int = 112) -> np.ndarray:
    """Aligned crop of one face (uint8, crop_size², same channels as `frame`)."""
    return warp(frame, similarity_transform(landmarks, crop_size), crop_size)
