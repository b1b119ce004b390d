"""faces → align → spot for one camera, one frame at a time, shared by daemon, CLI and bench.

Continuity is checked on every frame: a sensor gap, a dropped frame (the index jumps: a ring
overrun) or a re-anchored track makes every window across it invalid (DESIGN §3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2

from streamer.capture import Frame
from streamer.config import FacesConfig, SpotterConfig
from streamer.crops import as_bgr, face_crop
from streamer.faces import DETECTORS
from streamer.faces.tracker import FaceTracker
from streamer.spotting.noise import NoiseFloor
from streamer.spotting.spotter import SpottedEvent, TrackSpotter, make_meter, spotter_options

INTEROCULAR_112 = 35.24  # eye distance of the ArcFace template in a 112-pixel crop


def make_detector(cfg: FacesConfig, threads: int = 1):
    """The configured face detector (streamer.faces.DETECTORS) as a callable frame → list[Face].

    Raises DetectorUnavailable naming what to install when its package or model is missing.
    """
    section = cfg.detector_options()
    return DETECTORS.load(section.type).from_config(section, threads=threads).detect


def roi_detector(cfg: FacesConfig, detector):
    """The detector for crops around tracked faces, or None where only full scans are possible
    (a detector without a `roi` hook scans the whole frame)."""
    section = cfg.detector_options()
    roi = getattr(DETECTORS.load(section.type), "roi", None)
    return roi(detector, section) if roi is not None else None


def k_frames(k_ms: float, fps: float) -> int:
    return max(2, round(k_ms * fps / 1000.0))


@dataclass
class PipelineStats:
    frames: int = 0
    breaks: int = 0  # continuity breaks seen (gaps + overrun drops)
    tracks: int = 0
    counters: dict[str, int] = field(default_factory=dict)


class Pipeline:
    def __init__(self, faces: FacesConfig, spotter: SpotterConfig, fps: float, detector=None,
                 noise_seed: tuple[float, float] | None = None, keep_crops: bool = True,
                 fixed_thresholds: dict[int, float] | None = None, record: bool = False, explain: bool = False):
        self.faces_cfg, self.spot_cfg, self.fps = faces, spotter, fps
        self.k = k_frames(spotter.k_ms, fps)
        detector = detector or make_detector(faces)
        self.tracker = FaceTracker(detector, faces.detect_every, faces.max_faces, faces.min_face_px,
                                   roi_detector=roi_detector(faces, detector),
                                   scan_every=max(1, round(faces.scan_every_s * fps)))
        self.crop = faces.crop_size
        self.meter = make_meter(spotter)
        self.spotters: dict[int, TrackSpotter] = {}
        self.noise_seed = noise_seed
        self.keep_crops = keep_crops
        self.fixed = fixed_thresholds
        self.record = record
        self.explain = explain  # spotters keep a per-frame trace for `mfvan-eval spot --explain`
        self.stats = PipelineStats()
        self._last_index: int | None = None

    def _spotter(self, track: int) -> TrackSpotter:
        sp = self.spotters.get(track)
        if sp is None:
            c = self.spot_cfg
            floor = NoiseFloor(c.mad_c, window=max(64, round(c.floor_window_s * self.fps)),
                               warmup=max(8, round(c.warmup_s * self.fps)), seed=self.noise_seed)
            fixed = None if self.fixed is None else self.fixed.get(track, float("inf"))
            sp = TrackSpotter(track, self.fps, self.k, self.meter, floor, c.micro_min_ms, c.micro_max_ms,
                              c.edge_fraction, c.max_episode_s, fixed_threshold=fixed, keep_crops=self.keep_crops,
                              end_fraction=c.end_fraction,
                              micro_max_score=c.micro_max_disp * INTEROCULAR_112 * c.spot_size / 112.0,
                              confirm_factor=c.confirm_factor, **spotter_options(c, self.fps))
            sp.record = self.record
            if self.explain:
                sp.trace = []
            self.spotters[track] = sp
            self.stats.tracks += 1
        return sp

    def process(self, frame: Frame, behind: bool = False) -> list[SpottedEvent]:
        """`behind`: a live source's frames are queueing up; the tracker may defer detector runs."""
        self.stats.frames += 1
        broken = frame.gap_before or (self._last_index is not None and frame.index != self._last_index + 1)
        self._last_index = frame.index
        if broken:
            self.stats.breaks += 1
            self.tracker.reset()
            for sp in self.spotters.values():
                sp.break_continuity("gap")
        img, grey = as_bgr(frame.image)  # colour frames: the tracker converts only the face regions it tracks in
        events: list[SpottedEvent] = []
        live = set()
        for t in self.tracker.update(img, grey, defer=behind):
            live.add(t.id)
            sp = self._spotter(t.id)
            if t.discontinuity:
                sp.break_continuity("reanchor")
            try:
                bgr = face_crop(img, t.landmarks, self.crop)  # the one crop path (streamer/crops.py)
            except ValueError:
                sp.break_continuity("align")
                continue
            g = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            if self.meter.size != self.crop:
                g = cv2.resize(g, (self.meter.size, self.meter.size), interpolation=cv2.INTER_AREA)
            ev = sp.push(frame.index, frame.ts_ns, g, bgr)
            if ev is not None:
                events.append(ev)
        for tid, sp in self.spotters.items():
            if tid not in live and (sp.episode is not None or sp.ring):
                sp.break_continuity("lost")  # the face left or was lost: no window spans the loss
        return events

    def flush(self) -> list[SpottedEvent]:
        return [ev for sp in self.spotters.values() if (ev := sp.flush()) is not None]

    def counters(self) -> dict[str, int]:
        out = {"frames": self.stats.frames, "breaks": self.stats.breaks, "tracks": self.stats.tracks,
               "detections": self.tracker.stats.detections,
               "scans": self.tracker.stats.scans, "reanchors": self.tracker.stats.reanchors,
               "lost": self.tracker.stats.lost, "deferred": self.tracker.stats.deferred, "flows": self.meter.flows}
        for name in ("micro", "macro", "too_short", "invalid", "blinks", "weak", "drift"):
            out[name] = sum(getattr(sp.stats, name) for sp in self.spotters.values())
        return out

