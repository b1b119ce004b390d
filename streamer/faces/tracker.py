"""Multi-face tracking: detect every N frames, follow faces with optical flow in between.

Why rigid propagation of the landmarks: the five landmarks include the mouth corners and the
eyes, which move *with* an expression. Tracking each landmark on its own would make the
alignment follow the expression and erase the very motion the spotter looks for. Instead we
track many corner points inside the face with pyramidal Lucas-Kanade, keep those that pass a
forward-backward check, fit a similarity transform (robust LMEDS: expression motion is the
outlier) and move the landmarks by it. The landmarks therefore only move rigidly between
re-anchors, which is exactly "similarity re-alignment to the window's reference" (DESIGN §3).

A new detection does not snap a matched track's landmarks (a snap is a jump the spotter would
see as motion) unless they drifted more than `reanchor_tol` of the face size; a snap is
reported as a discontinuity so windows across it are invalid.

Two detection cadences. Checking a tracked face for drift needs the detector only where the
face is: with a `roi_detector`, every `detect_every` frames each track is re-detected in a
square crop around it (a ~160-pixel input instead of the whole frame: about a third of the
cost, and the face is larger in it, so its landmarks are finer). Finding *new* faces needs the
whole frame, but a person entering the room can wait a fraction of a second: the full-frame
scan runs every `scan_every` frames while faces are tracked, and every `detect_every` frames
when none is (or a track is lost). Without a `roi_detector` every detection is a full scan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamer.faces.types import Face

Detector = Callable[[np.ndarray], list[Face]]

# At 100-200 fps a face moves a few pixels between frames: a small window and one pyramid
# level are enough, and they are what makes tracking cost ~0.1 ms instead of ~0.6 ms.
_WIN = (11, 11)
_LEVELS = 1
_LK = {
    "winSize": _WIN,
    "maxLevel": _LEVELS,
    "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03),
}


@dataclass
class Track:
    id: int
    landmarks: np.ndarray  # (5, 2) float32 in frame pixels, moved rigidly between re-anchors
    box: np.ndarray  # (4,) float32
    points: np.ndarray = field(default_factory=lambda: np.empty((0, 1, 2), np.float32))
    misses: int = 0  # consecutive detections that did not see this track
    age: int = 0
    discontinuity: bool = True  # set on the frame the track starts or is re-anchored
    lost: bool = False
    region: tuple[int, int, int, int] | None = None  # frame area tracked in, kept while the face is inside
    small: np.ndarray | None = field(default=None, repr=False)  # last frame's region, grey, downscaled

    @property
    def size(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass
class TrackerStats:
    detections: int = 0
    reanchors: int = 0
    lost: int = 0
    new_tracks: int = 0
    scans: int = 0  # full-frame detections (of `detections`)
    deferred: int = 0  # due detector runs put off while the pipeline was behind (`update(defer=True)`)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class FaceTracker:
    """`update(frame_bgr, grey)` → the live tracks of this frame (stable ids)."""

    def __init__(self, detector: Detector, detect_every: int = 10, max_faces: int = 8,
                 min_face_px: int = 48, reanchor_tol: float = 0.06, max_misses: int = 3,
                 fb_tol_px: float = 1.0, max_points: int = 40, min_points: int = 8, track_px: int = 128,
                 roi_detector: Detector | None = None, scan_every: int | None = None, roi_margin: float = 0.4):
        self.detector = detector
        self.roi_detector = roi_detector
        self.detect_every = detect_every
        self.scan_every = max(detect_every, scan_every or detect_every)
        self.roi_margin = roi_margin
        self.max_faces = max_faces
        self.min_face_px = min_face_px
        self.reanchor_tol = reanchor_tol
        self.max_misses = max_misses
        self.fb_tol = fb_tol_px
        self.max_points = max_points
        self.min_points = min_points
        self.track_px = track_px
        self.tracks: list[Track] = []
        self.stats = TrackerStats()
        self._next_id = 0
        self._prev: np.ndarray | None = None  # the previous frame (BGR or grey), never modified
        self._since_detect = 0
        self._since_scan = 0
        self._force_detect = True

    def reset(self) -> None:
        """Forget motion continuity (after a sensor gap): re-detect, keep ids where boxes match."""
        self._prev = None
        self._force_detect = True
        for t in self.tracks:
            t.small = None

    # how far a due detector run may be put off while the caller is behind: drift stays bounded
    # (tracking alone drifts a fraction of a pixel per 100 ms) and a new face still waits < 4 scans
    MAX_DEFER = 4

    def update(self, frame_bgr: np.ndarray, grey: np.ndarray | None = None, defer: bool = False) -> list[Track]:
        """Track into this frame; `grey` only saves conversions if the caller has it anyway.

        `defer`: the caller is falling behind a live source (frames waiting in its ring). A due
        drift check or scan of faces that track well is then put off (counted), up to MAX_DEFER
        intervals. Why: detection is a fifth of the cost with two faces and the one part whose
        timing does not matter within a few hundred ms; shedding it lets the pipeline catch up
        instead of losing frames at the ring. Lost tracks and empty frames are never deferred.
        """
        frame = grey if grey is not None else frame_bgr
        for t in self.tracks:
            t.discontinuity = False
        if self._prev is not None:
            for t in self.tracks:
                self._follow(t, self._prev, frame)
            if any(t.lost for t in self.tracks):
                # kept until the detection below: a re-found face keeps its id
                self.stats.lost += sum(t.lost for t in self.tracks)
                self._force_detect = True
        self._since_detect += 1
        self._since_scan += 1
        due = self._since_detect >= self.detect_every
        roi_only = self.roi_detector is not None and bool(self.tracks)
        scan_due = self._since_scan >= self.scan_every
        if (defer and (due or scan_due) and self.tracks and not self._force_detect and self._prev is not None
                and self._since_detect < self.MAX_DEFER * self.detect_every
                and self._since_scan < self.MAX_DEFER * self.scan_every):
            self.stats.deferred += 1
            due = scan_due = False
        if self._force_detect or self._prev is None or scan_due or (due and not roi_only):
            self._detect(frame_bgr, frame)
        elif due:
            self._detect_rois(frame_bgr, frame)
        self._prev = frame
        self.tracks = [t for t in self.tracks if not t.lost]
        for t in self.tracks:
            t.age += 1
        return list(self.tracks)

    # -- detection and association -------------------------------------------------------
    def _detect(self, frame_bgr: np.ndarray, frame: np.ndarray) -> None:
        """Full-frame scan: check every track and start tracks for new faces."""
        self._since_detect = self._since_scan = 0
        self._force_detect = False
        self.stats.detections += 1
        self.stats.scans += 1
        self._associate([f for f in self.detector(frame_bgr) if f.size >= self.min_face_px], frame, new=True)

    def _detect_rois(self, frame_bgr: np.ndarray, frame: np.ndarray) -> None:
        """Drift check of the tracked faces only: the detector runs on a crop around each."""
        self._since_detect = 0
        self.stats.detections += 1
        faces: list[Face] = []
        h, w = frame_bgr.shape[:2]
        for t in self.tracks:
            cx, cy = (t.box[0] + t.box[2]) / 2, (t.box[1] + t.box[3]) / 2
            half = t.size * (0.5 + self.roi_margin)
            x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
            x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
            if x1 - x0 < 16 or y1 - y0 < 16:
                continue
            off = np.array([x0, y0], np.float32)
            for f in self.roi_detector(frame_bgr[y0:y1, x0:x1]):
                if f.size >= self.min_face_px:
                    faces.append(Face(f.box + np.tile(off, 2), f.landmarks + off, f.score))
        self._associate(faces, frame, new=False)

    def _associate(self, faces: list[Face], frame: np.ndarray, new: bool) -> None:
        matched: set[int] = set()
        for t in self.tracks:
            best, best_iou = None, 0.3
            for j, f in enumerate(faces):
                if j in matched:
                    continue
                iou = _iou(t.box, f.box)
                if iou > best_iou:
                    best, best_iou = j, iou
            if best is None:
                t.misses += 1
                t.lost = t.lost or t.misses > self.max_misses
                continue
            matched.add(best)
            f = faces[best]
            t.misses = 0
            drift = float(np.linalg.norm(f.landmarks - t.landmarks, axis=1).mean()) / max(t.size, 1.0)
            if t.lost or drift > self.reanchor_tol or t.points.shape[0] < self.min_points:
                t.lost = False
                t.landmarks = f.landmarks.astype(np.float32).copy()
                t.box = f.box.astype(np.float32).copy()
                t.discontinuity = True
                self.stats.reanchors += 1
            self._seed(t, frame)
        for j, f in enumerate(faces):
            if not new or j in matched or len(self.tracks) >= self.max_faces:
                continue
            t = Track(self._next_id, f.landmarks.astype(np.float32).copy(), f.box.astype(np.float32).copy())
            self._next_id += 1
            self.stats.new_tracks += 1
            self._seed(t, frame)
            self.tracks.append(t)

    def _region(self, box: np.ndarray, shape: tuple[int, ...], margin: float = 0.25) -> tuple[int, int, int, int]:
        w, h = box[2] - box[0], box[3] - box[1]
        x0 = int(max(0, box[0] - margin * w))
        y0 = int(max(0, box[1] - margin * h))
        x1 = int(min(shape[1], box[2] + margin * w))
        y1 = int(min(shape[0], box[3] + margin * h))
        return x0, y0, x1, y1

    def _seed(self, t: Track, frame: np.ndarray) -> None:
        x0, y0, x1, y1 = self._region(t.box, frame.shape, margin=0.0)
        if x1 - x0 < 8 or y1 - y0 < 8:
            t.points = np.empty((0, 1, 2), np.float32)
            return
        pts = cv2.goodFeaturesToTrack(_grey(frame[y0:y1, x0:x1]), self.max_points, 0.01, max(3, (x1 - x0) // 12),
                                      blockSize=5)
        if pts is None:
            t.points = np.empty((0, 1, 2), np.float32)
            return
        t.points = (pts.reshape(-1, 1, 2) + np.array([x0, y0], np.float32)).astype(np.float32)

    # -- tracking between detections -------------------------------------------------------
    def _small(self, frame: np.ndarray, region: tuple[int, int, int, int]) -> tuple[np.ndarray, float]:
        """The region in grey at the tracking scale, and that scale.

        Why per region: only the face is tracked, so converting and downscaling the whole
        frame would be wasted work; a face of ~200 px keeps plenty of texture at ~100 px, and
        the rigid fit over dozens of points averages the sub-pixel errors out.
        """
        x0, y0, x1, y1 = region
        img = _grey(frame[y0:y1, x0:x1])
        f = 1.0
        while img.shape[1] > 1.5 * self.track_px:  # pyrDown: 7x faster than an INTER_AREA resize
            img, f = cv2.pyrDown(img), f * 0.5
        return img, f

    def _follow(self, t: Track, prev: np.ndarray, cur: np.ndarray) -> None:
        if t.points.shape[0] < self.min_points:
            t.lost = True
            return
        # The region stays put while the face is well inside it, so this frame's downscaled
        # region is next frame's "previous" one and each frame is prepared once, not twice.
        if t.region is None or not _contains(t.region, self._region(t.box, cur.shape, margin=0.1)):
            t.region = self._region(t.box, cur.shape, margin=0.35)
            t.small = None
        if t.small is None:
            t.small, _ = self._small(prev, t.region)
        b, f = self._small(cur, t.region)  # same region, so the same scale as the previous one
        a, t.small = t.small, b
        off = np.array(t.region[:2], np.float32)
        p0 = (t.points - off) * f
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, p0, None, **_LK)
        if p1 is None:
            t.lost = True
            return
        p0r, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, **_LK)
        fb = np.linalg.norm((p0 - p0r).reshape(-1, 2), axis=1) / f
        good = (st1.reshape(-1) == 1) & (st2.reshape(-1) == 1) & (fb < self.fb_tol)
        if good.sum() < self.min_points:
            t.lost = True
            return
        src, dst = p0[good].reshape(-1, 2) / f, p1[good].reshape(-1, 2) / f
        m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
        if m is None:
            t.lost = True
            return
        lm = t.landmarks - off
        t.landmarks = (lm @ m[:, :2].T + m[:, 2] + off).astype(np.float32)
        corners = np.array([[t.box[0], t.box[1]], [t.box[2], t.box[3]]], np.float32) - off
        c = corners @ m[:, :2].T + m[:, 2] + off
        t.box = np.array([c[0, 0], c[0, 1], c[1, 0], c[1, 1]], np.float32)
        t.points = (dst + off).reshape(-1, 1, 2).astype(np.float32)
        if not (np.isfinite(t.landmarks).all() and 0 < t.box[2] - t.box[0] < 10 * prev.shape[1]):
            t.lost = True


def _grey(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def _contains(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]
