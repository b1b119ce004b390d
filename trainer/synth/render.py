"""Render a clip: an identity, timed events, and the distractors a camera adds.

Frame t is made in four steps: (1) the canonical face is warped locally by the sum of the
active events' fields times their onset->apex->offset curves; (2) the whole frame follows a
smooth similarity transform (head drift and small rotation, occasional quicker head moves);
(3) brightness flicker; (4) Gaussian sensor noise. Ground truth is exact because the events
are the only source of local facial motion.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from trainer.synth.identities import Identity
from trainer.synth.warps import blink_field, expression_field, roi

KINDS = ("micro", "macro", "blink")


@dataclass(frozen=True)
class PlannedEvent:
    """One facial event; frames are 0-based indices into the clip."""

    kind: str  # micro | macro | blink
    label: str  # negative | positive | surprise ("" for blinks)
    onset: int
    apex: int
    offset: int
    amplitude_px: float  # largest displacement at the apex, before head motion

    def curve(self, t: np.ndarray | float) -> np.ndarray:
        """Raised-cosine rise onset->apex and fall apex->offset, 0 outside."""
        t = np.asarray(t, np.float64)
        rise = np.clip((t - self.onset) / max(self.apex - self.onset, 1), 0, 1)
        fall = np.clip((self.offset - t) / max(self.offset - self.apex, 1), 0, 1)
        a = np.where(t <= self.apex, 0.5 - 0.5 * np.cos(np.pi * rise), 0.5 - 0.5 * np.cos(np.pi * fall))
        return np.where((t < self.onset) | (t > self.offset), 0.0, a)


@dataclass(frozen=True)
class Distractors:
    drift_px: float = 4.0  # amplitude of slow head translation
    rotation_deg: float = 1.5  # amplitude of slow head rotation
    scale: float = 0.01  # slow zoom (towards/away from the camera)
    head_moves: Sequence[tuple[int, int, float, float]] = ()  # (start, frames, dx, dy) quick moves
    noise_sigma: float = 2.0  # grey levels
    flicker: float = 0.012  # relative brightness swing
    flicker_hz: float = 1.3


@dataclass
class Clip:
    frames: list[np.ndarray]
    events: list[PlannedEvent]
    fps: float
    pose: np.ndarray  # (T, 4) tx, ty, rotation_deg, scale
    gain: np.ndarray  # (T,)
    identity: str
    landmarks: np.ndarray = field(repr=False)  # canonical 68 points (frame 0 before head motion)

    def ground_truth(self) -> dict:
        return {"identity": self.identity, "fps": self.fps, "n_frames": len(self.frames),
                "events": [asdict(e) for e in self.events]}


def _smooth_path(rng: np.random.Generator, n: int, fps: float, amplitude: float) -> np.ndarray:
    """Sum of three low-frequency sinusoids (0.05-0.6 Hz), random phases, peak ~ amplitude."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for _ in range(3):
        f, ph = rng.uniform(0.05, 0.6), rng.uniform(0, 2 * np.pi)
        out += np.sin(2 * np.pi * f * t + ph) / 3
    return amplitude * out


class Renderer:
    """Frame-by-frame renderer; `frames()` streams so a long clip never sits in memory."""

    def __init__(self, identity: Identity, events: Sequence[PlannedEvent], n_frames: int, seed: int,
                 fps: float = 200.0, distractors: Distractors | None = None):
        self.identity, self.events, self.n, self.fps = identity, list(events), n_frames, fps
        d = distractors or Distractors()
        rng = np.random.default_rng(seed)
        img = identity.image
        self.h, self.w = img.shape[:2]
        self.box = roi(identity.landmarks, (self.h, self.w))
        x0, y0, x1, y1 = self.box
        self.fields = [blink_field(identity.landmarks, self.box) if e.kind == "blink"
                       else expression_field(identity.landmarks, e.label, e.amplitude_px, self.box)
                       for e in self.events]
        self.curves = np.array([e.curve(np.arange(n_frames)) for e in self.events]).reshape(len(self.events), n_frames)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self.grid = (xs, ys)
        tx = _smooth_path(rng, n_frames, fps, d.drift_px)
        ty = _smooth_path(rng, n_frames, fps, d.drift_px * 0.7)
        for start, length, dx, dy in d.head_moves:  # quick, smooth head moves (a few px in ~0.2 s)
            step = 0.5 - 0.5 * np.cos(np.pi * np.clip((np.arange(n_frames) - start) / max(length, 1), 0, 1))
            tx, ty = tx + dx * step, ty + dy * step
        rot = _smooth_path(rng, n_frames, fps, d.rotation_deg)
        scl = 1.0 + _smooth_path(rng, n_frames, fps, d.scale)
        self.pose = np.stack([tx, ty, rot, scl], 1).astype(np.float32)
        t = np.arange(n_frames) / fps
        self.gain = (1 + d.flicker * np.sin(2 * np.pi * d.flicker_hz * t + rng.uniform(0, 6.3))
                     + rng.normal(0, d.flicker / 6, n_frames)).astype(np.float32)
        pad = 32
        self.noise = np.clip(rng.normal(0, d.noise_sigma, (self.h + pad, self.w + pad, 3)), -127, 127).astype(np.int16)
        self.noise_offsets = rng.integers(0, pad + 1, (n_frames, 2))
        self.centre = identity.landmarks.mean(0)

    def face_frame(self, t: int) -> np.ndarray:
        """Step 1 only: the locally warped canonical face (no head motion, no noise)."""
        active = np.nonzero(self.curves[:, t] > 1e-4)[0]
        img = self.identity.image
        if len(active) == 0:
            return img
        disp = sum(np.float32(self.curves[i, t]) * self.fields[i] for i in active)
        x0, y0, x1, y1 = self.box
        out = img.copy()
        # backward map: the pixel at p shows what was at p - d(p) (d small and smooth)
        out[y0:y1, x0:x1] = cv2.remap(img, self.grid[0] - disp[0], self.grid[1] - disp[1],
                                      cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out

    def matrix(self, t: int) -> np.ndarray:
        tx, ty, rot, scl = self.pose[t]
        m = cv2.getRotationMatrix2D((float(self.centre[0]), float(self.centre[1])), float(rot), float(scl))
        m[:, 2] += (tx, ty)
        return m

    def frame(self, t: int) -> np.ndarray:
        face = self.face_frame(t)
        moved = cv2.warpAffine(face, self.matrix(t), (self.w, self.h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        lit = cv2.convertScaleAbs(moved, alpha=float(self.gain[t]))
        oy, ox = self.noise_offsets[t]
        return cv2.add(lit, self.noise[oy:oy + self.h, ox:ox + self.w], dtype=cv2.CV_8U)

    def frames(self) -> Iterator[np.ndarray]:
        for t in range(self.n):
            yield self.frame(t)


def render_clip(identity: Identity, events: Sequence[PlannedEvent], seed: int, n_frames: int | None = None,
                fps: float = 200.0, distractors: Distractors | None = None) -> Clip:
    """Render a whole clip in memory (for tests and previews; the corpus writer streams).

    `n_frames` defaults to 40 frames after the last event's offset.
    """
    if n_frames is None:
        n_frames = max((e.offset for e in events), default=0) + 40
    r = Renderer(identity, events, n_frames, seed, fps, distractors)
    return Clip(list(r.frames()), list(events), fps, r.pose, r.gain, identity.name, identity.landmarks)
