"""Pairs: (onset, apex) wire crops with labels and subjects; the one PairSet of the project.

Why wire crops (aligned BGR uint8 S×S, exactly what the streamer sends): INT8 scales learnt
on anything else calibrate a different input distribution from the one served, and a model
trained on anything else learns one it never gets. The trainer, LOSO and calibration all hold
their pairs in this `PairSet`, in BGR, and convert them to the network's input with
`engine.tensors.crops_to_nchw` only. Sources here:
- `.npz` pair files (`save_pairs`; e.g. recorded from a streamer, or cached by the trainer),
  a single file or a folder of them;
- clips (`ClipPair`: frame paths + onset/apex positions), cropped by the streamer's one crop
  path (`streamer.crops.clip_crops`: the daemon's face detection, tracking and warp). Reading a
  corpus into clips is the caller's job (`mfvan-build-engine` reads it with `trainer.datasets`).

Held-out pairs for the INT8 report are split off by subject, so the report never scores a
face whose statistics set the quantisation scales.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class CalibrationError(RuntimeError):
    """Calibration data is missing or unusable; the message says what to provide."""


def _no_frames() -> np.ndarray:
    return np.zeros((0, 1, 1, 3), np.uint8)


@dataclass(kw_only=True)
class PairSet:
    """Aligned (onset, apex) crop pairs, BGR uint8 as on the wire, with what is known of each.

    `frames` (optional) are crops strictly between onset and apex, in time order, for the
    teacher's Eq. 1 and the LBP-TOP baseline; `frame_owner[k]` is the pair frame k belongs to.
    """

    onset: np.ndarray  # (N, S, S, 3) uint8 BGR
    apex: np.ndarray  # (N, S, S, 3) uint8 BGR
    labels: np.ndarray  # (N,) int64 class index into label_names, -1 = unknown
    label_names: list[str]
    subjects: np.ndarray | Sequence[str] = ()  # (N,) str (object array); "unknown" when not given
    clips: list[str] = field(default_factory=list)  # (N,) "subject/clip@apex"; "" when not given
    frames: np.ndarray = field(default_factory=_no_frames)
    frame_owner: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    def __post_init__(self) -> None:
        n = len(self.onset)
        if self.onset.shape != self.apex.shape or self.onset.dtype != np.uint8 or self.onset.ndim != 4:
            raise CalibrationError(f"pairs must be two (N, S, S, 3) uint8 arrays, got {self.onset.shape}/{self.apex.shape}")
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.labels) != n:
            raise CalibrationError(f"{len(self.labels)} labels for {n} pairs")
        self.label_names = [str(x) for x in self.label_names]
        subjects = ["unknown"] * n if len(self.subjects) == 0 else [str(x) for x in self.subjects]
        self.subjects = np.array(subjects, dtype=object)
        if len(self.subjects) != n:
            raise CalibrationError(f"{len(self.subjects)} subjects for {n} pairs")
        self.clips = [""] * n if not len(self.clips) else [str(x) for x in self.clips]
        if len(self.clips) != n:
            raise CalibrationError(f"{len(self.clips)} clips for {n} pairs")
        self.frame_owner = np.asarray(self.frame_owner, dtype=np.int64).reshape(-1)
        if len(self.frames) == 0:
            self.frames = np.zeros((0, *self.onset.shape[1:]), np.uint8)
        if len(self.frames) != len(self.frame_owner) or self.frames.shape[1:] != self.onset.shape[1:]:
            raise CalibrationError(f"{len(self.frames)} frames {self.frames.shape[1:]} for {len(self.frame_owner)} owners")

    def __len__(self) -> int:
        return len(self.onset)

    @property
    def crop_size(self) -> int:
        return int(self.onset.shape[1])

    @property
    def labelled(self) -> bool:
        return bool(len(self)) and bool((self.labels >= 0).all())

    def subject_list(self) -> list[str]:
        return sorted(set(self.subjects.tolist()))

    def take(self, idx: np.ndarray | Sequence[int]) -> PairSet:
        """The pairs at integer positions `idx` (and their frames)."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        remap = np.full(len(self), -1, np.int64)
        remap[idx] = np.arange(len(idx))
        keep = remap[self.frame_owner] >= 0 if len(self.frames) else np.zeros(0, bool)
        return PairSet(
            onset=self.onset[idx], apex=self.apex[idx], labels=self.labels[idx], label_names=list(self.label_names),
            subjects=self.subjects[idx], clips=[self.clips[i] for i in idx],
            frames=self.frames[keep], frame_owner=remap[self.frame_owner[keep]],
        )

    def select_subjects(self, keep: set[str] | list[str]) -> PairSet:
        keep = set(keep)
        return self.take(np.flatnonzero([s in keep for s in self.subjects]))

    def sequence(self, i: int) -> np.ndarray:
        """onset, the frames between, apex: [T, S, S, 3] in time order."""
        mid = self.frames[self.frame_owner == i]
        return np.concatenate([self.onset[i : i + 1], mid, self.apex[i : i + 1]], axis=0)

    def pretrain_frames(self) -> np.ndarray:
        """Every frame the teacher reconstructs: the in-between frames plus every onset and apex."""
        return np.concatenate([self.frames, self.onset, self.apex], axis=0)

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
        subjects=np.array(pairs.subjects.tolist(), dtype=str),
        clips=np.array(pairs.clips, dtype=str),
    )
    return path


def load_pairs(path: str | Path) -> PairSet:
    try:
        with np.load(path, allow_pickle=False) as z:  # never unpickle calibration files
            return PairSet(
                onset=z["onset"], apex=z["apex"], labels=z["labels"].astype(np.int64),
                label_names=[str(s) for s in z["label_names"]], subjects=[str(s) for s in z["subjects"]],
                clips=[str(s) for s in z["clips"]] if "clips" in z.files else [],
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
        onset=np.concatenate([s.onset for s in sets]),
        apex=np.concatenate([s.apex for s in sets]),
        labels=np.concatenate([s.labels for s in sets]),
        label_names=list(names),
        subjects=[x for s in sets for x in s.subjects],
        clips=[x for s in sets for x in s.clips],
    )


@dataclass(frozen=True)
class ClipPair:
    """One labelled event of a clip: every frame of the clip, and the event's frame positions."""

    frames: tuple[Path, ...]  # the clip's frames in time order (the clip is replayed from the first)
    onset: int  # 0-based positions in `frames`
    apex: int
    label: str
    subject: str
    fps: float = 200.0
    name: str = ""


def from_clips(events: Sequence[ClipPair], crop_size: int, label_names: list[str], faces=None,
               progress: bool = False) -> tuple[PairSet, list[str]]:
    """(pairs, skipped 'event: reason' lines) through the streamer's one crop path.

    Each clip is replayed once, from its first frame, for all of its events (`clip_crops`), so
    the crops are the ones the daemon would send. Events whose label is not a model label are
    skipped (the INT8 report needs labels it can score), as are events the daemon would send no
    pair for (no face, face lost or re-anchored between onset and apex); both are listed.
    """
    from tqdm import tqdm

    from streamer.config import FacesConfig
    from streamer.crops import clip_crops
    from streamer.pipeline import make_detector

    faces = (faces or FacesConfig()).model_copy(update={"crop_size": crop_size})
    detector = None  # made once, on the first clip, for every clip (the model loads once)
    skipped: list[str] = []
    by_clip: dict[tuple[tuple[Path, ...], float], list[ClipPair]] = {}
    for ev in events:
        if ev.label not in label_names:
            skipped.append(f"{ev.name or ev.subject}: label {ev.label!r} not in {list(label_names)}")
            continue
        by_clip.setdefault((ev.frames, ev.fps), []).append(ev)
    onsets, apexes, labels, subjects, clips = [], [], [], [], []
    for (frames, fps), evs in tqdm(by_clip.items(), desc="calibration clips", unit="clip", disable=not progress):
        detector = detector or make_detector(faces)
        for ev, got in zip(evs, clip_crops(frames, [(e.onset, e.apex) for e in evs], faces, fps, detector), strict=True):
            if not got.ok:
                skipped.append(f"{ev.name or ev.subject}: {got.error}")
                continue
            onsets.append(got.crops[0])
            apexes.append(got.crops[-1])
            labels.append(label_names.index(ev.label))
            subjects.append(ev.subject)
            clips.append(ev.name)
    if not onsets:
        raise CalibrationError("no usable micro-expression pairs" + "".join("\n  " + x for x in skipped[:10]))
    return PairSet(onset=np.stack(onsets), apex=np.stack(apexes), labels=labels, label_names=list(label_names),
                   subjects=subjects, clips=clips), skipped


def collect(
    source: str | Path, crop_size: int, label_names: list[str], max_pairs: int = 0,
    read_corpus: Callable[[Path], list[ClipPair]] | None = None,
) -> PairSet:
    """Pairs from an .npz file, a folder of .npz files, or a corpus folder.

    A corpus folder (a folder without .npz files) is read by `read_corpus` (the caller's
    dataset loader: calibration knows no dataset layout) into clip events, which are cropped
    by the streamer's crop path (`from_clips`).
    """
    src = Path(source)
    if src.is_file():
        pairs = load_pairs(src)
    elif src.is_dir():
        files = sorted(src.glob("*.npz"))
        if files:
            pairs = concat([load_pairs(f) for f in files])
        elif read_corpus is None:
            raise CalibrationError(f"{src}: no .npz pair files (reading a corpus folder needs a corpus reader)")
        else:
            events = read_corpus(src)
            if max_pairs and len(events) > max_pairs:
                pick = np.random.default_rng(0).choice(len(events), max_pairs, replace=False)
                events = [events[i] for i in sorted(pick)]
            pairs, _skipped = from_clips(events, crop_size, list(label_names))
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
    subjects = pairs.subject_list()
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
