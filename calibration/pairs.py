"""Calibration pairs: (onset, apex) wire crops with labels and subjects, from any source.

Why wire crops (aligned BGR uint8 S×S, exactly what the streamer sends): INT8 scales learnt
on anything else calibrate a different input distribution from the one served. Sources:
- `.npz` pair files (`save_pairs`; e.g. recorded from a streamer, or cached by the trainer),
  a single file or a folder of them;
- a CASME II-layout corpus (the synthetic corpus or a real dataset) read through
  `trainer.datasets` and aligned with the streamer's own face code (`streamer.faces`).

Held-out pairs for the INT8 report are split off by subject, so the report never scores a
face whose statistics set the quantisation scales.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class CalibrationError(RuntimeError):
    """Calibration data is missing or unusable; the message says what to provide."""


@dataclass
class PairSet:
    onset: np.ndarray  # (N, S, S, 3) uint8 BGR
    apex: np.ndarray
    labels: np.ndarray  # (N,) int64 class index into label_names, -1 = unknown
    label_names: list[str]
    subjects: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.onset)
        if self.onset.shape != self.apex.shape or self.onset.dtype != np.uint8 or self.onset.ndim != 4:
            raise CalibrationError(f"pairs must be two (N, S, S, 3) uint8 arrays, got {self.onset.shape}/{self.apex.shape}")
        if len(self.labels) != n:
            raise CalibrationError(f"{len(self.labels)} labels for {n} pairs")
        if not self.subjects:
            self.subjects = ["unknown"] * n
        if len(self.subjects) != n:
            raise CalibrationError(f"{len(self.subjects)} subjects for {n} pairs")

    def __len__(self) -> int:
        return len(self.onset)

    @property
    def crop_size(self) -> int:
        return int(self.onset.shape[1])

    @property
    def labelled(self) -> bool:
        return bool(len(self)) and bool((self.labels >= 0).all())

    def take(self, idx: np.ndarray) -> PairSet:
        return PairSet(
            self.onset[idx], self.apex[idx], self.labels[idx], list(self.label_names), [self.subjects[i] for i in idx]
        )

    def digest(self) -> str:
        """sha256 of the pixels and labels: the manifest's calibration hash."""
        h = hashlib.sha256()
        for arr in (self.onset, self.apex, self.labels.astype(np.int64)):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update("\x00".join(self.label_names).encode())
        return h.hexdigest()


def save_pairs(path: str | Path, pairs: PairSet) -> Path:
    path = Path(path)
    np.savez_compressed(
        path,
        onset=pairs.onset,
        apex=pairs.apex,
        labels=pairs.labels.astype(np.int64),
        label_names=np.array(pairs.label_names, dtype=str),
        subjects=np.array(pairs.subjects, dtype=str),
    )
    return path


def load_pairs(path: str | Path) -> PairSet:
    try:
        with np.load(path, allow_pickle=False) as z:  # never unpickle calibration files
            return PairSet(
                z["onset"], z["apex"], z["labels"].astype(np.int64), [str(s) for s in z["label_names"]],
                [str(s) for s in z["subjects"]],
            )
    except (OSError, KeyError, ValueError) as exc:
        raise CalibrationError(f"{path}: not a calibration pair file ({exc})") from None


def concat(sets: list[PairSet]) -> PairSet:
    if not sets:
        raise CalibrationError("no calibration pairs")
    names = sets[0].label_names
    for s in sets[1:]:
        if s.label_names != names or s.crop_size != sets[0].crop_size:
            raise CalibrationError("pair files disagree on labels or crop size")
    return PairSet(
        np.concatenate([s.onset for s in sets]),
        np.concatenate([s.apex for s in sets]),
        np.concatenate([s.labels for s in sets]),
        list(names),
        [x for s in sets for x in s.subjects],
    )


def from_corpus(
    root: Path, crop_size: int, label_names: list[str], max_pairs: int = 0, cache_dir: str | Path | None = None
) -> PairSet:
    """Onset/apex crops of a CASME II-layout corpus (the synthetic corpus or a real dataset).

    Prefers the trainer's crop builder (`trainer.train.crops.build_pairs`: the very crops the
    model was trained on, from its `.npz` crop cache when present, built with the streamer's
    face code); falls back to detecting + aligning here with `streamer.faces`. Either way the
    result is converted to the wire's BGR. Samples whose label is not a model label are kept
    as unknown (-1) only in the fallback; the trainer's builder skips them.
    """
    try:
        from trainer.datasets import load_casme2
    except ImportError as exc:
        raise CalibrationError(f"reading a corpus needs trainer.datasets ({exc}); pass .npz pair files instead") from None
    samples = [s for s in load_casme2(root) if s.kind == "micro"]
    if max_pairs:
        rng = np.random.default_rng(0)
        samples = [samples[i] for i in sorted(rng.choice(len(samples), min(max_pairs, len(samples)), replace=False))]
    try:
        from trainer.train.crops import build_pairs
    except ImportError:
        build_pairs = None
    if build_pairs is not None:
        if cache_dir is None:
            from trainer.config.train import DataConfig

            cache_dir = DataConfig().cache_dir
        try:
            ps, _skipped = build_pairs(samples, label_names, crop_size, cache_dir=cache_dir)
        except ValueError as exc:
            raise CalibrationError(f"{root}: {exc}") from None
        # trainer crops are RGB; the wire (and so calibration) is BGR
        return PairSet(
            np.ascontiguousarray(ps.onset[..., ::-1]), np.ascontiguousarray(ps.apex[..., ::-1]),
            np.asarray(ps.labels, np.int64), list(label_names), [str(x) for x in ps.subjects],
        )
    return _align_here(root, samples, crop_size, label_names)


def _align_here(root: Path, samples: list, crop_size: int, label_names: list[str]) -> PairSet:
    import cv2
    from tqdm import tqdm

    from streamer.faces.align import align
    from streamer.faces.retinaface import RetinaFaceDetector

    detector = RetinaFaceDetector(input_width=320, score_threshold=0.8, threads=2)
    onsets, apexes, labels, subjects = [], [], [], []
    skipped = 0
    for s in tqdm(samples, desc="calibration pairs", unit="pair"):
        frames = [cv2.imread(str(p)) for p in (s.onset_path, s.apex_path)]
        if any(f is None for f in frames):
            skipped += 1
            continue
        faces = detector.detect(frames[0])
        if not faces:
            skipped += 1
            continue
        face = max(faces, key=lambda f: f.score)
        # the window's first frame decides the transform for both crops (DESIGN §3 alignment)
        onsets.append(align(frames[0], face.landmarks, crop_size))
        apexes.append(align(frames[1], face.landmarks, crop_size))
        labels.append(label_names.index(s.label) if s.label in label_names else -1)
        subjects.append(str(s.subject))
    if not onsets:
        raise CalibrationError(f"{root}: no usable micro-expression pairs ({skipped} skipped: no face or unreadable)")
    return PairSet(np.stack(onsets), np.stack(apexes), np.array(labels, np.int64), list(label_names), subjects)


def collect(
    source: str | Path, crop_size: int, label_names: list[str], max_pairs: int = 0, cache_dir: str | Path | None = None
) -> PairSet:
    """Pairs from an .npz file, a folder of .npz files, or a corpus folder (see module doc)."""
    src = Path(source)
    if src.is_file():
        pairs = load_pairs(src)
    elif src.is_dir():
        files = sorted(src.glob("*.npz"))
        pairs = concat([load_pairs(f) for f in files]) if files else from_corpus(src, crop_size, label_names, max_pairs, cache_dir)
    else:
        raise CalibrationError(f"calibration source {src} does not exist (want .npz pairs or a corpus folder)")
    if pairs.crop_size != crop_size:
        raise CalibrationError(f"{src}: crops are {pairs.crop_size}px, the model takes {crop_size}px")
    if pairs.label_names != list(label_names):
        raise CalibrationError(f"{src}: labels {pairs.label_names} != model labels {list(label_names)}")
    if max_pairs and len(pairs) > max_pairs:
        pairs = pairs.take(np.random.default_rng(0).choice(len(pairs), max_pairs, replace=False))
    return pairs


def split_held_out(pairs: PairSet, fraction: float = 0.25, seed: int = 0) -> tuple[PairSet, PairSet]:
    """(calibration, held-out), split by subject when there are ≥ 2 subjects, else by pair."""
    rng = np.random.default_rng(seed)
    subjects = sorted(set(pairs.subjects))
    if len(subjects) >= 2:
        rng.shuffle(subjects)
        k = max(1, round(len(subjects) * fraction))
        held = set(subjects[:k])
        mask = np.array([s in held for s in pairs.subjects])
    else:
        mask = np.zeros(len(pairs), bool)
        mask[rng.choice(len(pairs), max(1, round(len(pairs) * fraction)), replace=False)] = True
    idx = np.arange(len(pairs))
    return pairs.take(idx[~mask]), pairs.take(idx[mask])
