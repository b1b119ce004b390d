"""Shared by the engine, calibration and system tests: a real (random-weight) model
checkpoint, artefacts built from it, and aligned wire-format face pairs from real photos."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

LABELS = ["negative", "positive", "surprise"]


def make_checkpoint(path: Path, seed: int = 0, model: dict | None = None) -> Path:
    import torch

    from trainer.checkpoint import save_checkpoint
    from trainer.config.train import ModelConfig
    from trainer.models import create_model

    torch.manual_seed(seed)
    cfg = ModelConfig(**(model or {}))
    net = create_model(cfg)
    return save_checkpoint(path, net, cfg, LABELS, stage="test", epoch=0)


def build(tmp: Path, model: dict | None = None, **fields) -> Path:
    """Build an artefact from a fresh random-weight checkpoint in `tmp` (`model`: ModelConfig
    fields other than the defaults); returns its folder."""
    from trainer.build import build_artefact
    from trainer.config.build import BuildConfig

    tmp.mkdir(parents=True, exist_ok=True)
    ckpt = make_checkpoint(tmp / "model.ckpt", model=model)
    out = tmp / "artefact"
    build_artefact(BuildConfig(checkpoint=str(ckpt), out=str(out), **fields), progress=False)
    return out


@lru_cache(maxsize=1)
def aligned_faces(size: int = 112) -> tuple[np.ndarray, ...]:
    """Aligned BGR crops of every face in the stills that ship with installed packages."""
    import cv2

    from streamer.faces.align import align
    from streamer.faces.retinaface import RetinaFaceDetector
    from trainer.media import local_stills

    det = RetinaFaceDetector(input_width=320, score_threshold=0.8, threads=1)
    crops = []
    for path in sorted(local_stills().values()):
        img = cv2.imread(str(path))
        for face in det.detect(img):
            crops.append(align(img, face.landmarks, size))
    assert crops, "no face found in the package stills"
    return tuple(crops)


def face_pairs(n: int, size: int = 112, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n (onset, apex) pairs: a real aligned face and the same face with a small local warp
    (a 1-3 px shift of the lower half, like a mouth-corner micro-movement)."""
    import cv2

    rng = np.random.default_rng(seed)
    faces = aligned_faces(size)
    onset, apex = [], []
    for i in range(n):
        base = faces[i % len(faces)]
        dy, dx = rng.uniform(-3, 3, 2)
        moved = cv2.warpAffine(base, np.float32([[1, 0, dx], [0, 1, dy]]), (size, size), borderMode=cv2.BORDER_REFLECT)
        ap = base.copy()
        ap[size // 2 :] = moved[size // 2 :]
        onset.append(base)
        apex.append(ap)
    return np.stack(onset), np.stack(apex)
