"""AU-like displacement fields anchored on 68-point landmarks.

Each expression is a set of handles: a landmark, a direction in the face's own axes
(x along the eye line towards the subject's left in the image, y towards the chin) and a
Gaussian radius in inter-ocular units. The field is the sum of the handles' Gaussians,
rescaled so its largest displacement equals the requested apex amplitude exactly.

Why Gaussian handles and not a thin-plate spline: a TPS has global support, so lifting a lip
corner would also nudge the forehead unless many pins are added; Gaussian handles are local
by construction, smooth (no tearing) and fold-free as long as amplitude/sigma < ~1.6, which
holds for every amplitude used here (checked in `field`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABELS = ("negative", "positive", "surprise")


@dataclass(frozen=True)
class Handle:
    points: tuple[int, ...]  # landmark indices, averaged
    direction: tuple[float, float]  # (along eye line, towards chin), face axes
    weight: float
    sigma: float  # in inter-ocular distances
    mirror: bool = False  # flip x for the image-right side handle


def _sym(left: tuple[int, ...], right: tuple[int, ...], d: tuple[float, float], w: float, s: float) -> list[Handle]:
    """A handle and its mirror: `d` is given for the image-left side, x pointing outwards = -x."""
    return [Handle(left, (-d[0], d[1]), w, s), Handle(right, (d[0], d[1]), w, s)]


EXPRESSIONS: dict[str, list[Handle]] = {
    # AU12 lip corners up and out, AU6 cheeks raised, lower lids pushed up.
    "positive": [
        *_sym((48,), (54,), (0.55, -0.85), 1.0, 0.20),
        *_sym((41, 31, 48), (46, 35, 54), (0.2, -1.0), 0.55, 0.30),
        *_sym((40, 41), (46, 47), (0.0, -1.0), 0.25, 0.10),
    ],
    # AU4 brows down and together, AU9/10 upper lip and nose wings up.
    "negative": [
        *_sym((21,), (22,), (-0.6, 0.8), 1.0, 0.20),
        *_sym((19,), (24,), (-0.2, 1.0), 0.6, 0.22),
        Handle((50, 51, 52), (0.0, -1.0), 0.7, 0.18),
        *_sym((31,), (35,), (0.0, -1.0), 0.35, 0.14),
    ],
    # AU1+2 brows up, AU5 upper lids up, AU26 small jaw drop.
    "surprise": [
        *_sym((20, 21), (22, 23), (0.0, -1.0), 1.0, 0.22),
        *_sym((17, 18), (25, 26), (0.0, -1.0), 0.8, 0.22),
        *_sym((37, 38), (43, 44), (0.0, -1.0), 0.35, 0.10),
        Handle((56, 57, 58, 65, 66, 67), (0.0, 1.0), 0.6, 0.20),
        Handle((7, 8, 9), (0.0, 1.0), 0.9, 0.28),
    ],
}


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit x (image-left eye -> image-right eye), unit y (towards chin), inter-ocular distance."""
    left, right = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
    ex = right - left
    iod = float(np.linalg.norm(ex))
    ex = ex / iod
    ey = np.array([-ex[1], ex[0]], np.float32)
    if np.dot(ey, landmarks[57] - landmarks[27]) < 0:
        ey = -ey
    return ex.astype(np.float32), ey, iod


def roi(landmarks: np.ndarray, shape: tuple[int, int], margin: float = 0.9) -> tuple[int, int, int, int]:
    """Region (x0, y0, x1, y1) that contains every handle's support."""
    _, _, iod = face_axes(landmarks)
    x0, y0 = landmarks.min(0) - margin * iod
    x1, y1 = landmarks.max(0) + margin * iod
    h, w = shape
    return max(0, int(x0)), max(0, int(y0)), min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))


def _gauss_field(centres: np.ndarray, vectors: np.ndarray, sigmas: np.ndarray,
                 box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    out = np.zeros((2, y1 - y0, x1 - x0), np.float32)
    for c, v, s in zip(centres, vectors, sigmas, strict=True):
        g = np.exp(-((xs - c[0]) ** 2 + (ys - c[1]) ** 2) / (2 * s * s))
        out[0] += v[0] * g
        out[1] += v[1] * g
    return out


def _taper(shape: tuple[int, int], width: float) -> np.ndarray:
    """1 inside, raised-cosine to exactly 0 over `width` px at the ROI edge.

    The warp is applied to the ROI only; without this a Gaussian tail cut at the ROI edge
    would leave a sub-pixel seam there on strong (macro) events.
    """
    h, w = shape
    width = max(width, 1.0)

    def ramp(n: int) -> np.ndarray:
        d = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(np.float32)
        return 0.5 - 0.5 * np.cos(np.pi * np.clip(d / width, 0, 1))

    return ramp(h)[:, None] * ramp(w)[None, :]


def expression_field(landmarks: np.ndarray, label: str, amplitude: float,
                     box: tuple[int, int, int, int]) -> np.ndarray:
    """(2, h, w) forward displacement (px) over `box` whose largest magnitude is `amplitude`."""
    ex, ey, iod = face_axes(landmarks)
    handles = EXPRESSIONS[label]
    centres = np.array([landmarks[list(h.points)].mean(0) for h in handles], np.float32)
    vectors = np.array([h.weight * (h.direction[0] * ex + h.direction[1] * ey) for h in handles], np.float32)
    sigmas = np.array([h.sigma * iod for h in handles], np.float32)
    f = _gauss_field(centres, vectors, sigmas, box) * _taper((box[3] - box[1], box[2] - box[0]), 0.4 * iod)
    peak = float(np.sqrt((f ** 2).sum(0)).max())
    f *= amplitude / peak
    _check_fold_free(f)
    return f


def blink_field(landmarks: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Forward displacement that carries each upper lid down onto the lower lid (a closed eye).

    The Gaussian is wider than tall and its vertical sigma exceeds 0.6x the lid travel, so the
    map stays fold-free even at full closure.
    """
    _, ey, iod = face_axes(landmarks)
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    out = np.zeros((2, y1 - y0, x1 - x0), np.float32)
    for upper, lower, corners in (((37, 38), (40, 41), (36, 39)), ((43, 44), (46, 47), (42, 45))):
        top, bottom = landmarks[list(upper)].mean(0), landmarks[list(lower)].mean(0)
        travel = float(np.dot(bottom - top, ey))
        if travel < 1.0:  # already closed or landmarks unreliable: no blink for this eye
            continue
        width = float(np.linalg.norm(landmarks[corners[1]] - landmarks[corners[0]]))
        sx, sy = 0.45 * width, max(0.75 * travel, 0.08 * iod)
        c = top
        g = np.exp(-((xs - c[0]) ** 2) / (2 * sx * sx) - ((ys - c[1]) ** 2) / (2 * sy * sy))
        out[0] += travel * ey[0] * g
        out[1] += travel * ey[1] * g
    out *= _taper(out.shape[1:], 0.4 * iod)
    _check_fold_free(out)
    return out


def _check_fold_free(f: np.ndarray) -> None:
    """The backward map p - d(p) is invertible when the Jacobian of d stays below 1."""
    if f.shape[1] < 2 or f.shape[2] < 2:
        return
    dxx = np.abs(np.diff(f[0], axis=1)).max()
    dyy = np.abs(np.diff(f[1], axis=0)).max()
    if max(dxx, dyy) >= 0.95:
        raise ValueError(f"displacement field would fold (max gradient {max(dxx, dyy):.2f})")
