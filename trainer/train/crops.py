"""Aligned (onset, apex) crops for training and LOSO, through the streamer's one crop path.

WHY the streamer's path: the network must see at training time exactly the crops the daemon
sends at run time, or it learns a crop distribution it never gets live. So a clip is replayed
from its first frame through the daemon's own face detection, rigid tracking and warp
(`streamer.crops.clip_crops`), once per clip for all of its events, and each event's onset,
apex (and `extra_frames` frames between them) are cut from the track the daemon would follow.
Crops are BGR uint8, the wire's order (`tests/system/test_crop_parity.py` holds the two paths
together).

Crops are cached per event as `.npz` (no pickle) under the data config's cache_dir; the key
holds the face settings, so changing them rebuilds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from streamer.config import FacesConfig
from streamer.crops import CropError, clip_crops
from trainer.train.data import PairSet

__all__ = ["CropError", "Cropper", "build_pairs", "frame_positions"]

_NUM = re.compile(r"(\d+)(?!.*\d)")
VERSION = "v4"  # v4: crops from the daemon's tracker replayed from the clip start, BGR


def frame_positions(paths: Sequence[str | Path], numbers: Sequence[int]) -> list[int]:
    """Frame numbers (the N of imgN, as datasets annotate them) -> 0-based positions in `paths`.

    A number that is no file's number is taken as a position (loaders that give positions).
    """
    index: dict[int, int] = {}
    for i, p in enumerate(paths):
        m = _NUM.search(Path(p).stem)
        if m:
            index.setdefault(int(m.group(1)), i)
    out = []
    for n in numbers:
        pos = index.get(int(n))
        if pos is None:
            if not 0 <= int(n) < len(paths):
                raise CropError(f"frame {n} is neither a frame number nor a position in {len(paths)} frames")
            pos = int(n)
        out.append(pos)
    return out


class Cropper:
    """Crops of dataset samples, grouped by clip so each clip is replayed once."""

    def __init__(self, crop_size: int, cache_dir: str | Path | None, extra_frames: int = 0,
                 faces: FacesConfig | None = None) -> None:
        self.crop_size = crop_size
        self.cache = Path(cache_dir) if cache_dir else None
        self.extra = extra_frames
        self.faces = (faces or FacesConfig()).model_copy(update={"crop_size": crop_size})
        self._detector: Any = None

    def key(self, s: Any) -> str:
        raw = (f"{VERSION}|{s.subject}|{s.clip}|{s.onset}|{s.apex}|{s.offset}|{self.extra}|{getattr(s, 'fps', 200.0)}"
               f"|{Path(s.frame_paths[0]).parent}|{len(s.frame_paths)}|{self.faces.model_dump_json()}")
        return hashlib.sha1(raw.encode()).hexdigest()[:16]

    def positions(self, s: Any) -> list[int]:
        """onset, the `extra` picks strictly between, apex: positions in the clip, in time order."""
        lo, hi = frame_positions(s.frame_paths, [int(s.onset), int(s.apex)])
        if hi <= lo:
            raise CropError(f"apex {s.apex} is not after onset {s.onset}")
        picks = sorted(set(np.linspace(lo, hi, self.extra + 2)[1:-1].round().astype(int).tolist())) if self.extra else []
        return [lo, *[p for p in picks if lo < p < hi], hi]

    def _path(self, s: Any) -> Path | None:
        return self.cache / f"{self.key(s)}.npz" if self.cache else None

    def _load(self, s: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        path = self._path(s)
        if path is None or not path.exists():
            return None
        with np.load(path, allow_pickle=False) as z:
            return z["onset"], z["apex"], z["frames"]

    def _store(self, s: Any, crops: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        path = self._path(s)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, onset=crops[0], apex=crops[1], frames=crops[2])
        tmp.replace(path)

    def detector(self):
        """The daemon's configured detector, made once for every clip (its model loads once)."""
        if self._detector is None:
            from streamer.pipeline import make_detector

            self._detector = make_detector(self.faces)
        return self._detector

    def crops_many(self, samples: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray] | str]:
        """Per sample: (onset, apex, frames between [K,S,S,3]) BGR uint8, or why there are none."""
        out: list[Any] = [None] * len(samples)
        todo: dict[tuple, list[tuple[int, list[int]]]] = {}
        for i, s in enumerate(samples):
            hit = self._load(s)
            if hit is not None:
                out[i] = hit
                continue
            try:
                pos = self.positions(s)
            except CropError as exc:
                out[i] = str(exc)
                continue
            todo.setdefault((tuple(s.frame_paths), float(getattr(s, "fps", 200.0))), []).append((i, pos))
        for (paths, fps), items in todo.items():
            for (i, _), got in zip(items, clip_crops(paths, [p for _, p in items], self.faces, fps, self.detector()),
                                   strict=True):
                if not got.ok:
                    out[i] = got.error
                    continue
                mid = got.crops[1:-1]
                frames = np.stack(mid) if mid else np.zeros((0, self.crop_size, self.crop_size, 3), np.uint8)
                out[i] = (got.crops[0], got.crops[-1], frames)
                self._store(samples[i], out[i])
        return out

    def crops(self, s: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One sample's (onset, apex, frames between) BGR uint8; CropError if it has none."""
        (got,) = self.crops_many([s])
        if isinstance(got, str):
            raise CropError(got)
        return got


def build_pairs(
    samples: Iterable[Any],
    label_names: Sequence[str],
    crop_size: int,
    cache_dir: str | Path | None = None,
    extra_frames: int = 0,
    kind: str = "micro",
    progress: bool = True,
    faces: FacesConfig | None = None,
) -> tuple[PairSet, list[str]]:
    """Crop every sample whose label is one of `label_names` (and of `kind`, unless "all").

    Returns the PairSet (BGR wire crops) and a list of 'clip: reason' lines for samples that
    were skipped (unreadable frames, no face, a face the daemon's tracker loses or re-anchors
    between onset and apex), which the caller reports: they are counted, not hidden.
    `faces` are the daemon's face settings (default: its defaults).
    """
    cropper = Cropper(crop_size, cache_dir, extra_frames, faces)
    lab = {n: i for i, n in enumerate(label_names)}
    skipped: list[str] = []
    todo = []
    for s in samples:
        if kind != "all" and getattr(s, "kind", "micro") != kind:
            continue
        if s.label not in lab:
            skipped.append(f"{s.subject}/{s.clip}: label {s.label!r} not in {list(label_names)}")
            continue
        todo.append(s)
    by_clip: dict[tuple, list[Any]] = {}
    for s in todo:
        by_clip.setdefault(tuple(s.frame_paths), []).append(s)
    got: dict[int, Any] = {}
    for group in tqdm(by_clip.values(), desc="crops (clips)", disable=not progress):
        for s, c in zip(group, cropper.crops_many(group), strict=True):
            got[id(s)] = c
    onset, apex, labels, subjects, clips, frames, owner = [], [], [], [], [], [], []
    for s in todo:
        c = got[id(s)]
        if isinstance(c, str):
            skipped.append(f"{s.subject}/{s.clip}: {c}")
            continue
        o, a, f = c
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
        label_names=list(label_names),
        subjects=subjects,
        clips=clips,
        frames=np.stack(frames) if frames else np.zeros((0, crop_size, crop_size, 3), np.uint8),
        frame_owner=np.array(owner, dtype=np.int64),
    )
    return pairs, skipped
