"""Face tracking between detections: several faces keep stable ids while they move, landmarks
follow rigid motion, a missed detection does not drop a track, a face that leaves is dropped."""

from __future__ import annotations

import cv2
import numpy as np

from streamer.faces.retinaface import RetinaFaceDetector
from streamer.faces.tracker import FaceTracker
from streamer.harness.clip import _base

cv2.setNumThreads(1)


def two_faces(dx: float, dy: float) -> np.ndarray:
    """Two half-size copies of a real face photo in one 640x480 frame, shifted by (dx, dy)."""
    base, _ = _base()
    small = cv2.resize(base[:, 80:560], (240, 240), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[100:340, 40:280] = small
    canvas[120:360, 360:600] = small
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(canvas, m, (640, 480), borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90))


def test_two_faces_keep_ids_and_follow_motion() -> None:
    det = RetinaFaceDetector(320, 0.7, threads=1)
    tracker = FaceTracker(det.detect, detect_every=15, min_face_px=40)
    first = None
    for i in range(60):
        dx, dy = 0.4 * i, 0.2 * i  # 24 px right, 12 px down over the run
        tracks = tracker.update(two_faces(dx, dy))
        if first is None:
            first = {t.id: t.landmarks.copy() for t in tracks}
    assert len(first) == 2
    assert {t.id for t in tracks} == set(first)
    for t in tracks:
        shift = (t.landmarks - first[t.id]).mean(axis=0)
        np.testing.assert_allclose(shift, [0.4 * 59, 0.2 * 59], atol=1.5)
    assert tracker.stats.new_tracks == 2 and tracker.stats.reanchors == 0


def test_missed_detections_keep_the_track_and_a_gone_face_is_dropped() -> None:
    det = RetinaFaceDetector(320, 0.7, threads=1)
    calls = {"n": 0}

    def flaky(frame):
        calls["n"] += 1
        return det.detect(frame) if calls["n"] == 1 else []  # the detector sees the faces only once

    tracker = FaceTracker(flaky, detect_every=5, min_face_px=40, max_misses=3)
    frame = two_faces(0, 0)
    ids = None
    for _ in range(15):  # two detections with no faces: within the miss budget
        tracks = tracker.update(frame)
        ids = ids or {t.id for t in tracks}
    assert {t.id for t in tracks} == ids and len(ids) == 2
    blank = np.full((480, 640, 3), 90, np.uint8)  # both faces leave: tracking fails, they are lost
    for _ in range(3):
        tracks = tracker.update(blank)
    assert tracks == [] and tracker.stats.lost >= 2


def test_optional_backends_fail_with_what_to_install(tmp_path) -> None:
    import pytest

    from streamer.config import FacesConfig
    from streamer.faces.insightface_backend import find_model
    from streamer.faces.types import DetectorUnavailable
    from streamer.pipeline import make_detector

    with pytest.raises(DetectorUnavailable, match="ships none"):
        find_model("buffalo_l", tmp_path)
    for name in ("insightface", "mediapipe"):
        try:
            make_detector(FacesConfig(detector=name))
        except DetectorUnavailable as exc:
            assert "pip install" in str(exc) or "ships none" in str(exc)


def test_roi_checks_reanchor_in_frame_coordinates_and_scans_find_new_faces() -> None:
    """Between full scans a tracked face is checked in a crop around it: a drifted track is
    snapped back to where the full-frame detector puts the face; a face that appears is found
    only by a full scan (ROI checks never start tracks)."""
    import functools

    det = RetinaFaceDetector(320, 0.7, threads=1)
    scans = {"n": 0}

    def full(frame):
        scans["n"] += 1
        return det.detect(frame)

    tracker = FaceTracker(full, detect_every=5, min_face_px=40, roi_detector=functools.partial(det.detect, width=160),
                          scan_every=30)
    both = two_faces(0, 0)
    one = both.copy()
    one[120:360, 360:600] = 90  # only the left face at first
    truth = {round(float(f.box[0])): f.landmarks for f in det.detect(both)}
    for _ in range(12):
        tracks = tracker.update(one)
    assert len(tracks) == 1 and scans["n"] == 1 and tracker.stats.detections == 3  # 1 scan + 2 ROI checks
    left = tracks[0]
    size = left.size
    left.landmarks = left.landmarks + np.float32([0.12 * size, 0.0])  # simulated drift: 12% of the face
    for _ in range(12, 29):
        tracks = tracker.update(both)
    assert len(tracks) == 1, "a ROI check must not start a track for the new face"
    assert tracker.stats.reanchors == 1
    ref = truth[min(truth)]
    # back where the full-frame detector sees it (in frame pixels; the two input scales differ by ~3%)
    assert np.abs(tracks[0].landmarks - ref).max() < 0.05 * size
    for _ in range(29, 31):
        tracks = tracker.update(both)
    assert len(tracks) == 2 and scans["n"] == 2  # the scan at frame 30 found the second face


def test_detector_by_name_keeps_the_shared_faces_keys() -> None:
    """`faces.detector: retinaface` plus the shared faces.* keys mean what they meant before;
    the detector's own section overrides them for itself only."""
    import pytest
    from pydantic import ValidationError

    from streamer.config import FacesConfig
    from streamer.pipeline import make_detector, roi_detector

    cfg = FacesConfig(detector="retinaface", detect_width=400, score_threshold=0.6, reanchor_width=0)
    det = make_detector(cfg).__self__
    assert (det.input_width, det.score_threshold) == (400, 0.6)
    assert roi_detector(cfg, det.detect) is None  # reanchor_width 0: every check is a full scan
    own = FacesConfig(detector={"type": "retinaface", "detect_width": 480, "reanchor_width": 128}, detect_width=400)
    det = make_detector(own).__self__
    assert (det.input_width, det.score_threshold) == (480, 0.8)
    assert roi_detector(own, det.detect).keywords == {"width": 128}
    assert FacesConfig(detector="mediapipe", max_faces=3).detector_options().max_faces == 3
    with pytest.raises(ValidationError) as err:
        FacesConfig(detector={"type": "mediapipe", "pack": "buffalo_l"})
    assert err.value.errors()[0]["loc"] == ("detector", "pack")
    with pytest.raises(ValidationError, match="unknown face detector 'dlib'; choose from insightface, mediapipe, retinaface"):
        FacesConfig(detector="dlib")


def test_a_detector_registered_at_run_time_runs_in_the_real_pipeline() -> None:
    """A detector added through the registry alone (its class and section live in this test)
    is chosen by config, built with its own options, asked for its `roi` hook, and the
    real Pipeline tracks the face and spots the clip's micro-expression with it."""
    from pydantic import Field

    from engine.registry import PluginSection
    from streamer.capture import Frame
    from streamer.config import FacesConfig, SpotterConfig
    from streamer.faces import DETECTORS
    from streamer.faces.types import Face
    from streamer.harness.clip import ClipEvent, render_test_clip
    from streamer.pipeline import Pipeline
    from streamer.spotting.evaluate import iou

    _, lm = _base()
    lm = np.asarray(lm, np.float32)
    calls = {"full": 0, "roi": 0}

    class KnownFaceConfig(PluginSection):
        margin: float = Field(0.5, gt=0, le=2, description="box margin around the landmarks, in eye distances")
        score_threshold: float | None = None  # shared with faces.score_threshold

    class KnownFace:
        """Reports the face where the clip renders it (the clip's ground-truth landmarks)."""

        config = KnownFaceConfig

        def __init__(self, margin: float, score: float, threads: int):
            self.margin, self.score, self.threads = margin, score, threads

        @classmethod
        def from_config(cls, cfg: KnownFaceConfig, *, threads: int = 1):
            return cls(cfg.margin, cfg.score_threshold, threads)

        @staticmethod
        def roi(detect, cfg):
            calls["roi"] += 1
            return None  # no crop detector: every check is a full scan

        def detect(self, frame_bgr):
            calls["full"] += 1
            pad = self.margin * float(np.linalg.norm(lm[1] - lm[0]))
            box = np.array([*(lm.min(0) - pad), *(lm.max(0) + pad)], np.float32)
            return [Face(box, lm.copy(), 1.0)]

    DETECTORS.register("known", KnownFace)
    try:
        faces = FacesConfig(detector={"type": "known", "margin": 0.8}, score_threshold=0.3)
        truth = ClipEvent(200, 230, 262, "brow", 2.5)
        clip = render_test_clip(420, [truth], 200.0, seed=3, noise=1.5)
        pipe = Pipeline(faces, SpotterConfig(), 200.0)
        det = pipe.tracker.detector.__self__
        assert isinstance(det, KnownFace) and (det.margin, det.score, det.threads) == (0.8, 0.3, 1)
        events = []
        for i, f in enumerate(clip):
            events += pipe.process(Frame(i, round(i * 1e9 / 200.0), f))
        events += pipe.flush()
    finally:
        DETECTORS.unregister("known")
    assert calls["full"] >= 420 // 20 and calls["roi"] == 1, calls
    assert len(pipe.spotters) == 1
    micro = [e for e in events if e.kind == "micro"]
    assert max((iou((e.onset, e.offset), (truth.onset, truth.offset)) for e in micro), default=0.0) >= 0.5, \
        [(e.kind, e.onset, e.offset) for e in events]


def test_detector_runs_are_deferred_while_behind_bounded_and_never_for_a_lost_face() -> None:
    """`update(defer=True)` (the pipeline is behind a live source): due ROI checks and scans of
    well-tracked faces are put off and counted, at most MAX_DEFER intervals; tracking goes on
    meanwhile; a face that is lost is re-detected at once, behind or not."""
    import functools

    det = RetinaFaceDetector(320, 0.7, threads=1)
    tracker = FaceTracker(det.detect, detect_every=5, min_face_px=40, roi_detector=functools.partial(det.detect, width=160),
                          scan_every=10)
    frame = two_faces(0, 0)
    tracker.update(frame)  # the first scan starts both tracks
    assert tracker.stats.detections == 1 and len(tracker.tracks) == 2
    for i in range(1, 40):
        tracks = tracker.update(two_faces(0.2 * i, 0.0), defer=True)
        assert len(tracks) == 2
    # 39 frames behind: without deferral ~8 detector runs; with it one per MAX_DEFER scan intervals
    assert tracker.stats.deferred > 0
    assert 1 + 39 // (FaceTracker.MAX_DEFER * 10) <= tracker.stats.detections <= 2 + 39 // (FaceTracker.MAX_DEFER * 5)
    ran = tracker.stats.detections
    tracker.update(two_faces(8.0, 0.0))  # caught up: the overdue check runs on the next frame
    assert tracker.stats.detections == ran + 1
    blank = np.full((480, 640, 3), 90, np.uint8)
    before = tracker.stats.detections
    for _ in range(3):
        tracker.update(blank, defer=True)  # the faces are gone: tracking fails, re-detection is not put off
    assert tracker.stats.detections > before and tracker.tracks == []
