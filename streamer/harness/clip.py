"""Short synthetic clips with known events, rendered in memory from a real face photo.

Why here and not only in `trainer.synth`: the streamer's tests, benchmark and demo need a
clip with exact ground truth that renders in a second without the corpus (and without the
trainer's extras: `mfvan-bench streamer` runs on a base install); the data helper's corpus is
the evaluation set. A public-domain face photo shipped with the streamer
(`streamer/assets/grace_hopper.jpg`) is placed in a 640×480 frame; an event is a smooth local
displacement field (brows up, mouth corners out, lids) whose amplitude follows an
onset → apex → offset raised-cosine curve; sensor noise, head drift and rotation are optional
distractors.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

FACE_PHOTO = Path(__file__).resolve().parents[1] / "assets" / "grace_hopper.jpg"


@dataclass(frozen=True)
class ClipEvent:
    onset: int
    apex: int
    offset: int
    region: str = "brow"  # brow | mouth | eye
    amplitude_px: float = 3.0
    kind: str = "micro"


@lru_cache(maxsize=1)
def _base() -> tuple[np.ndarray, np.ndarray]:
    """(640×480 BGR frame with a face, its 5 landmarks), landmarks from the RetinaFace detector."""
    from streamer.faces.retinaface import RetinaFaceDetector

    img = cv2.imread(str(FACE_PHOTO))
    if img is None:
        raise RuntimeError(f"{FACE_PHOTO} is missing or unreadable: reinstall mfvan")
    canvas = np.full((480, 640, 3), 96, np.uint8)
    h, w = img.shape[:2]
    y0 = max(0, (h - 480) // 2)
    part = img[y0:y0 + 480, : min(w, 640)]
    x0 = (640 - part.shape[1]) // 2
    canvas[: part.shape[0], x0:x0 + part.shape[1]] = part
    faces = RetinaFaceDetector(640, 0.5).detect(canvas)
    if not faces:
        raise RuntimeError(f"no face found in {FACE_PHOTO}")
    return canvas, faces[0].landmarks


def _profile(t: np.ndarray, ev: ClipEvent) -> np.ndarray:
    a = np.zeros_like(t, dtype=np.float64)
    rise = (t >= ev.onset) & (t <= ev.apex)
    a[rise] = 0.5 - 0.5 * np.cos(np.pi * (t[rise] - ev.onset) / max(1, ev.apex - ev.onset))
    fall = (t > ev.apex) & (t <= ev.offset)
    a[fall] = 0.5 + 0.5 * np.cos(np.pi * (t[fall] - ev.apex) / max(1, ev.offset - ev.apex))
    return a


def _field(region: str, lm: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Unit displacement field (dx, dy) of one facial action, in frame pixels."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    eye_d = float(np.linalg.norm(lm[1] - lm[0]))
    sigma = 0.22 * eye_d
    dx = np.zeros((h, w), np.float32)
    dy = np.zeros((h, w), np.float32)

    def blob(cx: float, cy: float, vx: float, vy: float) -> None:
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        dx[:] += vx * g
        dy[:] += vy * g

    if region == "brow":
        for e in lm[:2]:
            blob(e[0], e[1] - 0.45 * eye_d, 0.0, -1.0)
    elif region == "mouth":
        blob(lm[3][0], lm[3][1], -0.8, -0.6)
        blob(lm[4][0], lm[4][1], 0.8, -0.6)
    elif region == "eye":
        for e in lm[:2]:
            blob(e[0], e[1] - 0.1 * eye_d, 0.0, 1.0)
    else:
        raise ValueError(f"unknown region {region!r}")
    return dx, dy


def render_test_clip(n_frames: int, events: list[ClipEvent], fps: float = 200.0, seed: int = 0,
                noise: float = 1.5, drift_px: float = 0.0, rotation_deg: float = 0.0, faces: int = 1,
                second_lag: int = 0) -> list[np.ndarray]:
    """Frames (BGR uint8 640×480) of a face with `events`; ground truth is the events list.

    `faces=2`: two faces side by side (each frame scaled 0.75, the face's 320 columns kept), for
    the multi-face load of an interview room. The right face shows the clip `second_lag` frames
    late (wrapping round), so its events are the same ones `second_lag` frames later and the
    two faces do not move in step.
    """
    if faces not in (1, 2):
        raise ValueError(f"faces must be 1 or 2, not {faces}")
    base, lm = _base()
    rng = np.random.default_rng(seed)
    h, w = base.shape[:2]
    t = np.arange(n_frames)
    fields = {r: _field(r, lm, (h, w)) for r in {e.region for e in events}}
    # remap only the face's neighbourhood: the fields vanish outside it
    eye_d = float(np.linalg.norm(lm[1] - lm[0]))
    cx, cy = float(lm[2][0]), float(lm[2][1])
    bx0, by0 = int(max(0, cx - 2 * eye_d)), int(max(0, cy - 2.2 * eye_d))
    bx1, by1 = int(min(w, cx + 2 * eye_d)), int(min(h, cy + 2 * eye_d))
    fields = {r: (fx[by0:by1, bx0:bx1], fy[by0:by1, bx0:bx1]) for r, (fx, fy) in fields.items()}
    yy, xx = np.mgrid[by0:by1, bx0:bx1].astype(np.float32)
    bank = [rng.normal(0, noise, base.shape).astype(np.int16) for _ in range(8)] if noise else []
    amps = [(_profile(t, e) * e.amplitude_px, fields[e.region]) for e in events]
    centre = tuple(float(v) for v in lm[2])
    out = []
    for i in range(n_frames):
        mx, my = xx.copy(), yy.copy()
        moving = False
        for amp, (fx, fy) in amps:
            if amp[i] != 0.0:
                # backward map: a pixel shows the content `amp` pixels against the motion
                mx -= amp[i] * fx
                my -= amp[i] * fy
                moving = True
        frame = base.copy()
        if moving:
            frame[by0:by1, bx0:bx1] = cv2.remap(base, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if drift_px or rotation_deg:
            phase = 2 * np.pi * i / max(1, n_frames)
            m = cv2.getRotationMatrix2D(centre, rotation_deg * np.sin(phase), 1.0)
            m[0, 2] += drift_px * np.sin(phase)
            m[1, 2] += 0.5 * drift_px * np.sin(2 * phase)
            frame = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if noise:
            # a bank of noise images at random offsets: independent enough, and fast
            n = bank[int(rng.integers(len(bank)))]
            dy, dx = int(rng.integers(0, 8)), int(rng.integers(0, 8))
            shifted = np.roll(n, (dy, dx), axis=(0, 1))
            frame = cv2.add(frame, shifted, dtype=cv2.CV_8U)
        out.append(frame)
    return out if faces == 1 else _side_by_side(out, float(lm[2][0]), second_lag)


def _side_by_side(frames: list[np.ndarray], face_x: float, lag: int, scale: float = 0.75) -> list[np.ndarray]:
    """Two faces in one 640×480 frame: each source frame scaled, 320 columns round the face."""
    h, w = frames[0].shape[:2]
    sw, sh = round(w * scale), round(h * scale)
    x0 = int(min(max(0, round(face_x * scale) - 160), sw - 320))
    y0 = (h - sh) // 2
    halves = [cv2.resize(f, (sw, sh), interpolation=cv2.INTER_AREA)[:, x0:x0 + 320] for f in frames]
    n = len(frames)
    out = []
    for i in range(n):
        canvas = np.full((h, w, 3), 96, np.uint8)
        canvas[y0:y0 + sh, :320] = halves[i]
        canvas[y0:y0 + sh, 320:640] = halves[(i - lag) % n]
        out.append(canvas)
    return out


def write_folder(frames: list[np.ndarray], folder, ext: str = ".png") -> None:
    """CASME II layout: img1.png, img2.png ... (1-based, as the datasets number them)."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames, 1):
        cv2.imwrite(str(folder / f"img{i}{ext}"), f)
