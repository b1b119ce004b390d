"""The one crop path: frames + a face track → the aligned crops the daemon sends.

WHY one path: the network must see at training time, in calibration and in the INT8 report
exactly the crops the daemon sends at run time, or each of them learns or measures a crop
distribution the others never see. So there is one function that cuts a tracked face out of a
frame (`face_crop`, used by `streamer.pipeline.Pipeline` for every frame of every track), and
one way to get the crops of an event from a recorded clip (`clip_crops`): replay the clip from
its first frame through the daemon's own face detection and rigid tracking (the tracker the
daemon's Pipeline builds, with the same settings), and cut the event's frames from the track
the daemon would have followed. A replay from the clip start is what `mfvan-streamd --video`
does, so the tracker's state at the onset (which detection anchored it, how far it has been
propagated) is the daemon's, and the crops match the Pair it sends (`tests/system/test_crop_parity.py`).

Crops are BGR uint8 (S, S, 3), the wire's format; `engine.tensors.crops_to_nchw` is the one
conversion to the network's RGB NCHW input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from streamer.config import FacesConfig
from streamer.faces.align import similarity_transform, warp


class CropError(ValueError):
    """An event whose face cannot be followed from the clip start to its frames."""


def as_bgr(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(BGR frame, grey frame or None): a grey camera is tracked in grey and cropped in BGR."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), image
    return image, None


def face_crop(image_bgr: np.ndarray, landmarks: np.ndarray, crop_size: int) -> np.ndarray:
    """The aligned BGR crop of one tracked face in one frame: what the daemon sends.

    A similarity from the track's five (rigidly propagated) landmarks to the ArcFace template,
    so every frame is re-aligned to the face and head motion never reaches the crop. Raises
    ValueError on degenerate landmarks.
    """
    return warp(image_bgr, similarity_transform(landmarks, crop_size), crop_size)


@dataclass
class EventCrops:
    """The crops of one event, at the positions asked for, or why there are none."""

    positions: tuple[int, ...]  # frame positions in the clip (0-based), onset first
    crops: list[np.ndarray] = field(default_factory=list)  # BGR (S, S, 3), one per position
    error: str = ""
    track: int = -1

    @property
    def ok(self) -> bool:
        return not self.error and len(self.crops) == len(self.positions)


def make_tracker(faces: FacesConfig, fps: float, detector=None):
    """The face tracker exactly as the daemon's Pipeline builds it (same detector, cadences)."""
    from streamer.config import SpotterConfig
    from streamer.pipeline import Pipeline  # late: the pipeline imports this module

    return Pipeline(faces, SpotterConfig(), fps, detector=detector, keep_crops=False).tracker


def _read(frame: np.ndarray | str | Path) -> np.ndarray:
    if isinstance(frame, np.ndarray):
        return frame
    img = cv2.imread(str(frame), cv2.IMREAD_COLOR)  # as the daemon's FolderSource reads a frame
    if img is None:
        raise CropError(f"cannot read {frame}")
    return img


def clip_crops(frames: Sequence[np.ndarray | str | Path], events: Sequence[Sequence[int]],
               faces: FacesConfig | None = None, fps: float = 200.0, detector=None) -> list[EventCrops]:
    """Each event's aligned crops at its frame positions (onset first, then in time order).

    The clip is replayed from position 0 to the last position any event needs, through the
    daemon's tracker; an event follows the largest face tracked at its onset. An event whose
    face is not tracked at the onset, is lost before its last frame, or is re-anchored in
    between (the daemon breaks continuity there and sends no pair) gets an `error` instead of
    crops. `frames` are BGR/grey arrays or image paths; `faces` defaults to the daemon's
    defaults (its `crop_size` is the crop side).
    """
    faces = faces or FacesConfig()
    out = [EventCrops(tuple(int(p) for p in ev)) for ev in events]
    for e in out:
        if not e.positions:
            e.error = "no frame positions"
        elif list(e.positions) != sorted(set(e.positions)) or e.positions[0] < 0 or e.positions[-1] >= len(frames):
            e.error = f"positions {e.positions} not increasing inside the clip's {len(frames)} frames"
    todo = [e for e in out if not e.error]
    if not todo:
        return out
    tracker = make_tracker(faces, fps, detector)
    last = max(e.positions[-1] for e in todo)
    for i in range(last + 1):
        try:
            img, grey = as_bgr(_read(frames[i]))
        except CropError as exc:
            for e in todo:
                if not e.error and e.positions[-1] >= i:
                    e.error = str(exc)
            break
        live = tracker.update(img, grey)
        for e in todo:
            if e.error or not e.positions[0] <= i <= e.positions[-1]:
                continue
            if i == e.positions[0]:
                if not live:
                    e.error = f"no face tracked at the onset (frame position {i})"
                    continue
                e.track = max(live, key=lambda t: t.size).id
            t = next((t for t in live if t.id == e.track), None)
            if t is None:
                e.error = f"the face was lost at frame position {i}, before the event's last frame"
                continue
            if t.discontinuity and i > e.positions[0]:
                e.error = f"the track re-anchored at frame position {i}: the daemon sends no pair across that"
                continue
            if i in e.positions:
                try:
                    e.crops.append(face_crop(img, t.landmarks, faces.crop_size))
                except ValueError as exc:
                    e.error = f"frame position {i}: {exc}"
    for e in out:
        if e.error:
            e.crops = []
    return out


def clip_pair(frames: Sequence[np.ndarray | str | Path], onset: int, apex: int, faces: FacesConfig | None = None,
              fps: float = 200.0, detector=None) -> tuple[np.ndarray, np.ndarray]:
    """The (onset, apex) BGR crops of one event of a clip (positions 0-based); CropError if none."""
    (e,) = clip_crops(frames, [(onset, apex)], faces, fps, detector)
    if not e.ok:
        raise CropError(e.error)
    return e.crops[0], e.crops[1]
