"""Aligned-crop cache: detect and align a face once per sample, store onset/apex crops.

The crops come from the streamer's own face code (`streamer.faces.retinaface` five points ->
`streamer.faces.align` similarity to the ArcFace template) so training sees the crops the
daemon serves. As in the streamer (DESIGN §3), the transform is estimated once, on the
sample's onset frame, and applied to every frame of the sample: head motion inside the
window stays visible as such.

One `.npz` per sample (no pickle): onset, apex (S,S,3 BGR uint8, the wire format), optional
`frames` (every frame onset..offset, or `every`-th), the 2x3 matrix, the five landmarks.
The file name carries a digest of what made it (source paths, sizes and mtimes, crop size,
frame option, detector settings, format version): a rerun with the same inputs reuses it;
changed inputs rebuild it. Files are written to a temp name then renamed (atomic).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from streamer.faces.align import similarity_transform, warp
from trainer.datasets.sample import Sample, frame_number

log = logging.getLogger("mfvan.preprocess")
FORMAT = "mfvan-crops/1"


@dataclass
class CacheReport:
    built: int = 0
    reused: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CacheOptions:
    crop_size: int = 112
    frames: bool = False  # also store the frames onset..offset
    every: int = 1  # with frames: keep every n-th frame
    detector_width: int = 640
    score_threshold: float = 0.5


def _stat(path: Path) -> str:
    st = path.stat()
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def cache_path(root: Path, s: Sample, opts: CacheOptions) -> Path:
    parts = [FORMAT, s.dataset, s.subject, s.clip, str(s.onset), str(s.apex), str(s.offset), repr(opts),
             _stat(s.onset_path), _stat(s.apex_path)]
    if opts.frames:
        parts += [_stat(s.path(n)) for n in _frame_numbers(s, opts)]
    digest = hashlib.sha1("\n".join(parts).encode()).hexdigest()[:12]
    return root / (s.dataset or "data") / s.subject / s.clip / f"{s.onset}_{s.apex}_{s.offset}_{digest}.npz"


def _frame_numbers(s: Sample, opts: CacheOptions) -> list[int]:
    idx = [n for n in map(frame_number, s.frame_paths) if s.onset <= n <= s.offset]
    return idx[:: max(1, opts.every)]


class Aligner:
    """RetinaFace + similarity alignment; picks the largest face (the subject in a corpus frame)."""

    def __init__(self, opts: CacheOptions, threads: int = 1):
        from streamer.faces.retinaface import RetinaFaceDetector

        self.opts = opts
        self.detector = RetinaFaceDetector(input_width=opts.detector_width, score_threshold=opts.score_threshold,
                                           threads=threads)

    def transform(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        faces = self.detector.detect(frame)
        if not faces:
            raise ValueError("no face on the onset frame")
        face = max(faces, key=lambda f: f.size)
        return similarity_transform(face.landmarks, self.opts.crop_size), face.landmarks


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read {path}")
    return img


def build_one(s: Sample, aligner: Aligner, out: Path) -> None:
    opts = aligner.opts
    onset = _read(s.onset_path)
    m, lm = aligner.transform(onset)
    arrays = {"onset": warp(onset, m, opts.crop_size), "apex": warp(_read(s.apex_path), m, opts.crop_size),
              "matrix": m, "landmarks5": lm.astype(np.float32),
              "numbers": np.array([s.onset, s.apex, s.offset], np.int64)}
    if opts.frames:
        nums = _frame_numbers(s, opts)
        arrays["frames"] = np.stack([warp(_read(s.path(n)), m, opts.crop_size) for n in nums])
        arrays["frame_numbers"] = np.array(nums, np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)


def build_cache(samples: Sequence[Sample], root: str | Path, opts: CacheOptions | None = None,
                progress: bool = True, report: CacheReport | None = None,
                threads: int = 1) -> dict[str, Path]:
    """Crops for every sample (key -> .npz path); failures are logged and listed, not fatal."""
    from tqdm import tqdm

    opts = opts or CacheOptions()
    root = Path(root)
    report = report if report is not None else CacheReport()
    aligner: Aligner | None = None
    out: dict[str, Path] = {}
    for s in tqdm(samples, desc="align+crop", unit="sample", disable=not progress):
        try:
            path = cache_path(root, s, opts)
            if path.exists():
                report.reused += 1
            else:
                aligner = aligner or Aligner(opts, threads)
                build_one(s, aligner, path)
                report.built += 1
            out[s.key] = path
        except (ValueError, KeyError, OSError) as exc:
            report.failed.append(f"{s.key}: {exc}")
            log.warning("crop cache: %s: %s", s.key, exc)
    return out


def load_crops(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
