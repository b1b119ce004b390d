"""Aligned (onset, apex) crops for training, built with the streamer's own face code.

WHY the same code as the streamer: the network must see at training time exactly the crops
the daemon sends at run time (RetinaFace 5 points -> `streamer.faces.align` similarity to
the same template), or it learns a crop distribution it never gets live. Like the streamer,
the transform is estimated once on the clip's onset frame and applied to every frame used.

Crops are cached per event as `.npz` (no pickle) under the data config's cache_dir.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from streamer.faces.align import warp
from trainer.train.data import PairSet

_NUM = re.compile(r"(\d+)(?!.*\d)")


class CropError(Exception):
    """A sample whose frames cannot be read or whose face is not found."""


def frame_index(paths: Sequence[str | Path]) -> dict[int, Path]:
    """Frame number (last integer of the file name, CASME II's imgN) -> path."""
    out: dict[int, Path] = {}
    for p in paths:
        m = _NUM.search(Path(p).stem)
        if m:
            out[int(m.group(1))] = Path(p)
    return out


def _frame(paths: Sequence[str | Path], index: dict[int, Path], n: int) -> np.ndarray:
    path = index.get(n)
    if path is None:  # loaders that give 0-based positions instead of frame numbers
        if not 0 <= n < len(paths):
            raise CropError(f"frame {n} is neither a frame number nor a position in {len(paths)} frames")
        path = Path(paths[n])
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise CropError(f"cannot read {path}")
    return img


def register(frame: np.ndarray, m: np.ndarray, ref_grey: np.ndarray, size: int) -> np.ndarray:
    """Crop `frame` with the onset's transform `m`, then remove the head's rigid motion since
    the onset by ECC (Euclidean) registration of the crop to the onset crop, in one warp.

    WHY: the streamer re-aligns every frame to its tracked face, so live pairs carry no head
    drift; crops cut with the onset transform alone would (a few px over 100 ms on the
    synthetic corpus), and that drift would swamp the 1-4 px micro-movement. The micro-
    movement is local, so the global fit follows the head, not the expression.
    """
    first = warp(frame, m, size)
    grey = cv2.cvtColor(first, cv2.COLOR_BGR2GRAY)
    w = np.eye(2, 3, dtype=np.float32)
    mask = np.zeros((size, size), np.uint8)  # the face only: the background does not move with the head
    cv2.ellipse(mask, (size // 2, int(size * 0.55)), (int(size * 0.36), int(size * 0.45)), 0, 0, 360, 255, -1)
    try:
        _, w = cv2.findTransformECC(ref_grey, grey, w, cv2.MOTION_EUCLIDEAN,
                                    (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4), mask, 3)
    except cv2.error:  # no convergence: keep the onset transform
        return first
    m3 = np.vstack([m, [0, 0, 1]]).astype(np.float64)
    w3 = np.vstack([w, [0, 0, 1]]).astype(np.float64)
    t = np.linalg.inv(m3) @ w3  # crop pixel -> frame pixel
    return cv2.warpAffine(frame, t[:2].astype(np.float32), (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


class Cropper:
    def __init__(self, crop_size: int, cache_dir: str | Path | None, extra_frames: int = 0) -> None:
        self.crop_size = crop_size
        self.cache = Path(cache_dir) if cache_dir else None
        self.extra = extra_frames
        self._detector: Any = None

    def _detect(self, bgr: np.ndarray) -> np.ndarray:
        if self._detector is None:
            from streamer.faces.retinaface import RetinaFaceDetector

            self._detector = RetinaFaceDetector(input_width=320, score_threshold=0.5, threads=1)
        faces = self._detector.detect(bgr)
        if not faces:
            raise CropError("no face found on the onset frame")
        best = max(faces, key=lambda f: float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])))
        return np.asarray(best.landmarks, np.float32)

    def key(self, s: Any) -> str:
        raw = f"v3|{s.subject}|{s.clip}|{s.onset}|{s.apex}|{s.offset}|{self.crop_size}|{self.extra}|{Path(s.frame_paths[0]).parent}"
        return hashlib.sha1(raw.encode()).hexdigest()[:16]

    def crops(self, s: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(onset, apex, frames strictly between them [K,S,S,3]) as RGB uint8, in time order."""
        cached = self.cache / f"{self.key(s)}.npz" if self.cache else None
        if cached is not None and cached.exists():
            with np.load(cached, allow_pickle=False) as z:
                return z["onset"], z["apex"], z["frames"]
        from streamer.faces.align import similarity_transform

        paths = list(s.frame_paths)
        index = frame_index(paths)
        onset_bgr = _frame(paths, index, int(s.onset))
        m = similarity_transform(self._detect(onset_bgr), self.crop_size)

        onset_crop = warp(onset_bgr, m, self.crop_size)
        ref = cv2.cvtColor(onset_crop, cv2.COLOR_BGR2GRAY)

        def crop(img: np.ndarray) -> np.ndarray:
            return cv2.cvtColor(register(img, m, ref, self.crop_size), cv2.COLOR_BGR2RGB)

        onset = cv2.cvtColor(onset_crop, cv2.COLOR_BGR2RGB)
        apex = crop(_frame(paths, index, int(s.apex)))
        lo, hi = int(s.onset), int(s.apex)
        picks = sorted(set(np.linspace(lo, hi, self.extra + 2)[1:-1].round().astype(int).tolist())) if self.extra else []
        extra = [crop(_frame(paths, index, n)) for n in picks if lo < n < hi]
        frames = np.stack(extra) if extra else np.zeros((0, self.crop_size, self.crop_size, 3), np.uint8)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.npz")
            np.savez(tmp, onset=onset, apex=apex, frames=frames)
            tmp.replace(cached)
        return onset, apex, frames


def build_pairs(
    samples: Iterable[Any],
    label_names: Sequence[str],
    crop_size: int,
    cache_dir: str | Path | None = None,
    extra_frames: int = 0,
    kind: str = "micro",
    progress: bool = True,
) -> tuple[PairSet, list[str]]:
    """Crop every sample whose label is one of `label_names` (and of `kind`, unless "all").

    Returns the PairSet and a list of 'clip: reason' lines for samples that were skipped
    (unreadable frames, no face), which the caller reports: they are counted, not hidden.
    """
    cropper = Cropper(crop_size, cache_dir, extra_frames)
    lab = {n: i for i, n in enumerate(label_names)}
    onset, apex, labels, subjects, clips, frames, owner, skipped = [], [], [], [], [], [], [], []
    todo = [s for s in samples if (kind == "all" or getattr(s, "kind", "micro") == kind)]
    for s in tqdm(todo, desc="crops", disable=not progress):
        if s.label not in lab:
            skipped.append(f"{s.subject}/{s.clip}: label {s.label!r} not in {list(label_names)}")
            continue
        try:
            o, a, f = cropper.crops(s)
        except (CropError, ValueError) as exc:
            skipped.append(f"{s.subject}/{s.clip}: {exc}")
            continue
        onset.append(o)
        apex.append(a)
        labels.append(lab[s.label])
        subjects.append(str(s.subject))
        clips.append(f"{s.subject}/{s.clip}@{s.apex}")
        owner.extend([len(labels) - 1] * len(f))
        frames.extend(f)
    if not labels:
        raise ValueError("no usable samples (see the skipped list)" + ("".join("\n  " + x for x in skipped[:10])))
    pairs = PairSet(
        onset=np.stack(onset),
        apex=np.stack(apex),
        labels=np.array(labels),
        subjects=np.array(subjects, dtype=object),
        clips=clips,
        label_names=list(label_names),
        frames=np.stack(frames) if frames else np.zeros((0, crop_size, crop_size, 3), np.uint8),
        frame_owner=np.array(owner, dtype=np.int64),
    )
    return pairs, skipped
