"""LBP-TOP (Zhao & Pietikainen 2007) + linear SVM: the handcrafted baseline of Table 1.

Uniform LBP (P=8, R=1) on the three orthogonal planes XY, XT, YT of the onset..apex
sequence of aligned grey crops, histograms per cell of a 4x4 spatial grid, concatenated
(3 planes x 16 cells x 10 bins = 480 features), standardised, linear SVM with class weights
balanced (the same class-frequency idea as MFVAN's alpha).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from skimage.feature import local_binary_pattern
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from trainer.train.data import PairSet

P, R, BINS = 8, 1, 10  # uniform LBP with P = 8 has P + 2 codes
SIZE = 64  # grey crops are resized to this before LBP (fixed feature length at any crop size)


def _hist(codes: np.ndarray) -> np.ndarray:
    h = np.bincount(codes.ravel().astype(np.int64), minlength=BINS).astype(np.float32)
    return h / max(1.0, h.sum())


def lbp_top(seq_bgr: np.ndarray, grid: int = 4) -> np.ndarray:
    """Feature vector of one [T, S, S, 3] uint8 sequence (T >= 3 for the temporal planes)."""
    vol = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (SIZE, SIZE), interpolation=cv2.INTER_AREA) for f in seq_bgr])  # uint8: LBP compares integers exactly
    if len(vol) < 3:  # pad short sequences by repetition so XT/YT planes have a centre row
        vol = np.concatenate([vol[:1], vol, vol[-1:]], axis=0)
    t, h, w = vol.shape
    xy = np.stack([local_binary_pattern(vol[i], P, R, "uniform") for i in range(1, t - 1)])  # [T-2, H, W]
    xt = np.stack([local_binary_pattern(vol[:, y, :], P, R, "uniform")[1:-1] for y in range(h)], axis=1)  # [T-2, H, W]
    yt = np.stack([local_binary_pattern(vol[:, :, x], P, R, "uniform")[1:-1] for x in range(w)], axis=2)  # [T-2, H, W]
    cell = SIZE // grid
    feats = []
    for plane in (xy, xt, yt):
        for gy in range(grid):
            for gx in range(grid):
                feats.append(_hist(plane[:, gy * cell : (gy + 1) * cell, gx * cell : (gx + 1) * cell]))
    return np.concatenate(feats)


_MEMO: dict[tuple[str, int, int], np.ndarray] = {}


def features(data: PairSet) -> np.ndarray:
    """Per-sample features, memoised by (clip, crop size, sequence length): LOSO folds share
    samples, and LBP-TOP is deterministic, so each sample is described once per process."""
    out = []
    for i in range(len(data)):
        seq = data.sequence(i)
        key = (data.clips[i], data.crop_size, len(seq))
        if key not in _MEMO:
            _MEMO[key] = lbp_top(seq)
        out.append(_MEMO[key])
    return np.stack(out)


def fit(train: PairSet, seed: int = 0) -> Callable[[PairSet], np.ndarray]:
    clf = make_pipeline(StandardScaler(), LinearSVC(C=0.1, class_weight="balanced", max_iter=5000, random_state=seed))
    clf.fit(features(train), train.labels)
    return lambda test: clf.predict(features(test)) if len(test) else np.zeros(0, np.int64)
