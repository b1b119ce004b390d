"""Onset → apex motion of a crop pair: the one function the trainer and the engine both call.

Why here (the engine runtime, numpy + OpenCV, no torch): a model trained on one flow and served
another learns inputs it never gets. The trainer imports this module for training, the engine
applies it as pre-processing when the artefact's model asks for it (`input_form: motion` in the
manifest's model config; `engine.tensors.pair_inputs`), so both compute the same numbers.

Method: OpenCV DIS optical flow (Kroeger et al. 2016) on grey crops resized to at most
`FLOW_SIZE` px, finest pyramid level 0 (micro-movements are sub-pixel to a few pixels, so the
coarse-only presets under-read them), 8 px patches at stride 4, one variational refinement
iteration. Output: u, v (in crop pixels, upsampled to the crop size) and the optical strain
magnitude sqrt(u_x² + v_y² + ½(u_y + v_x)²) (Liong et al.'s strain, as in OFF-ApexNet/HTNet's
inputs). The magnitude sqrt(u² + v²) is the network's first op, so the tensor stays 3 channels
and fits the artefact's input spec. Cost on this shared 2-core machine: ~0.6-1 ms per pair at
64 px (one thread; `mfvan-bench engine` reports it with the rest of pre-processing).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import cv2
import numpy as np

FLOW_SIZE = 64
CHANNELS = ("u", "v", "strain")
_local = threading.local()


def _dis() -> cv2.DISOpticalFlow:
    """One DIS object per thread (creating one costs more than a flow; calc is not re-entrant)."""
    dis = getattr(_local, "dis", None)
    if dis is None:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        dis.setFinestScale(0)
        dis.setPatchSize(8)
        dis.setPatchStride(4)
        dis.setGradientDescentIterations(12)
        dis.setVariationalRefinementIterations(1)
        dis.setUseMeanNormalization(True)  # flicker/gamma between onset and apex is not motion
        dis.setUseSpatialPropagation(True)
        _local.dis = dis
    return dis


def _grey(crop: np.ndarray, size: int) -> np.ndarray:
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise ValueError(f"expected an (S, S, 3) uint8 BGR crop, got {crop.shape} {crop.dtype}")
    g = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return g if g.shape[0] == size else cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA)


def pair_motion(onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
    """(S, S, 3) BGR uint8 onset and apex → float32 (3, S, S): u, v (crop px) and strain."""
    s = onset.shape[0]
    if apex.shape != onset.shape:
        raise ValueError(f"onset {onset.shape} and apex {apex.shape} crops differ")
    size = min(s, FLOW_SIZE)
    flow = _dis().calc(_grey(onset, size), _grey(apex, size), None)  # (size, size, 2), px of the small grid
    ux, uy = np.gradient(flow[..., 0], axis=1), np.gradient(flow[..., 0], axis=0)
    vx, vy = np.gradient(flow[..., 1], axis=1), np.gradient(flow[..., 1], axis=0)
    strain = np.sqrt(ux * ux + vy * vy + 0.5 * (uy + vx) ** 2)
    stack = np.dstack([flow * np.float32(s / size), strain.astype(np.float32)])
    if size != s:
        stack = cv2.resize(stack, (s, s), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(stack.transpose(2, 0, 1), dtype=np.float32)


def motion_nchw(onsets: Sequence[np.ndarray] | np.ndarray, apexes: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """A batch of pairs → float32 (B, 3, S, S), the motion form's first network input."""
    if len(onsets) != len(apexes):
        raise ValueError(f"{len(onsets)} onset crops for {len(apexes)} apex crops")
    if not len(onsets):
        raise ValueError("no crops")
    return np.stack([pair_motion(o, a) for o, a in zip(onsets, apexes, strict=True)])
