"""The streaming spotter: per-track motion episodes, classified micro or macro.

How it avoids the pitfalls of the plain MEGC recipe (DESIGN §3):

* Motion is measured on aligned grey crops: every frame is warped by a similarity from the
  track's rigidly propagated landmarks (see faces/tracker.py), so head translation *and*
  rotation are removed before any flow is computed; the residual global translation (the
  median flow over the face) is subtracted as well. Motion = the largest mean flow vector
  over facial ROIs (brows, eyes, mouth), in crop pixels.
* Trigger: a(t) = motion(C[t−k] → C[t]) above a noise floor learnt online from the track's
  own quiet frames (running median + c·MAD, `noise.py`).
* Both directions: once triggered, the neutral frame before the rise, R = C[t0−k], becomes
  the episode's reference and r(t) = motion(R → C[t]) is followed until the face is back at
  R (r below the floor for `hold` frames). The return to neutral therefore ends the episode
  instead of making a second peak k frames later, and a refractory period of k frames after
  the episode keeps a(t) (which then compares an expressive frame with a neutral one) quiet.
* Hysteresis: the trigger fires at the floor's threshold, but an episode is accepted only if
  its peak rises `confirm_factor` times as far above the floor; a noise excursion that just
  crosses the threshold is dropped (counted as weak).
* Interval placement: onset and offset are where r crosses floor + f·(peak − floor) on each
  side of the apex (r's maximum), not apex ± k.
* Kind: the length of the *whole* episode decides, so a macro-expression's rise cannot pass
  as a micro-event: 65–500 ms is micro, longer is macro, shorter is rejected. Amplitude
  decides too: a micro-expression is subtle, so an episode whose peak displacement exceeds
  `micro_max_disp` of the inter-ocular distance is macro whatever its length. An episode that
  never returns within `max_episode_s` (an expression change that is held) is a macro event.
* A sensor gap, a ring overrun, a track re-anchor or a new track breaks continuity: the open
  episode is dropped (counted as invalid) and the crop history restarts.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamer.spotting.noise import NoiseFloor

# ROIs in the 112-pixel ArcFace template frame (x0, y0, x1, y1), scaled to the crop size.
ROIS_112 = {
    "brow_l": (22, 26, 52, 44),
    "brow_r": (60, 26, 90, 44),
    "eye_l": (24, 44, 52, 60),
    "eye_r": (60, 44, 88, 60),
    "mouth_l": (26, 78, 56, 104),
    "mouth_r": (56, 78, 86, 104),
}
FACE_112 = (18, 24, 94, 108)
ROI_NAMES = tuple(ROIS_112)
EYES = np.array([n.startswith("eye") for n in ROI_NAMES])


@dataclass
class SpottedEvent:
    track: int
    onset: int  # frame indices in the source
    apex: int
    offset: int
    onset_ts_ns: int
    apex_ts_ns: int
    offset_ts_ns: int
    score: float  # peak motion in crop pixels above the floor
    kind: str  # "micro" | "macro"
    roi: str = ""
    spotted_ns: int = 0
    onset_crop: np.ndarray | None = field(default=None, repr=False)  # aligned BGR (S, S, 3)
    apex_crop: np.ndarray | None = field(default=None, repr=False)

    @property
    def duration_ms(self) -> float:
        return (self.offset_ts_ns - self.onset_ts_ns) / 1e6

    def to_json(self) -> dict:
        return {"track": self.track, "onset": self.onset, "apex": self.apex, "offset": self.offset,
                "score": round(float(self.score), 4), "kind": self.kind,
                "onset_ts_ns": self.onset_ts_ns, "apex_ts_ns": self.apex_ts_ns,
                "offset_ts_ns": self.offset_ts_ns, "roi": self.roi}


@dataclass(slots=True)
class EpisodeDecision:
    """What became of one triggered episode: the record `mfvan-eval spot --explain` reads.

    Why always kept (a short deque per track): a spotter that silently drops episodes cannot be
    debugged; one small record per episode costs nothing next to the optical flow.
    """

    start: int  # frame index of the trigger
    end: int  # frame index where the episode was judged
    onset: int
    apex: int
    offset: int
    peak: float  # r at the apex, crop pixels
    floor: float  # the floor's centre when judged
    threshold: float
    dur_ms: float
    outcome: str  # micro | macro | weak | too_short | blink | drift | invalid:<reason> | unfinished
    why: str = ""  # for macro: long | strong | held
    rois: tuple[float, ...] = ()  # each ROI's motion at the apex (order of ROI_NAMES)

    def to_json(self) -> dict:
        return {"start": self.start, "end": self.end, "onset": self.onset, "apex": self.apex,
                "offset": self.offset, "peak": round(self.peak, 4), "floor": round(self.floor, 4),
                "threshold": round(self.threshold, 4), "dur_ms": round(self.dur_ms, 1),
                "outcome": self.outcome, "why": self.why, "rois": [round(v, 3) for v in self.rois]}


# per-frame trace states (explain mode only)
WARMING, LEARNING, WATCHING, REFRACTORY, RETURNING, EPISODE = range(6)
STATE_NAMES = ("warming", "learning", "watching", "refractory", "returning", "episode")


@dataclass
class SpotterStats:
    micro: int = 0
    macro: int = 0
    too_short: int = 0
    drift: int = 0  # held, never-returning changes too weak to be an expression
    weak: int = 0  # peak below confirm_factor x the trigger margin: noise, not an event
    blinks: int = 0  # short eye-only episodes: blinks are not expressions (MEGC)
    invalid: int = 0  # episodes broken by a gap, overrun, re-anchor or lost track
    flows: int = 0


class MotionMeter:
    """ROI motion between two aligned grey crops with OpenCV's DIS optical flow.

    `rigid`: the head's residual motion removed from the flow is a similarity (translation,
    scale, rotation: each the median over the face's flow samples) instead of a translation
    only. Why: the alignment follows the head with a small lag and error; a residual rotation
    or zoom moves the left and right ROIs in opposite directions, which a median translation
    cannot cancel, and over a k-frame lag that drift is most of the noise floor. Expressions
    move a minority of the face, so the medians stay on the rigid part.
    """

    def __init__(self, size: int, rigid: bool = False):
        self.size = size
        self.rigid = rigid
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        s = size / 112.0
        self.rois = {n: tuple(round(v * s) for v in r) for n, r in ROIS_112.items()}
        self.face = tuple(round(v * s) for v in FACE_112)
        self.flows = 0
        # the similarity is read on a coarser grid (every 6th pixel: ~150 samples) than the
        # translation; per sample, its scale and rotation estimates are dot products with
        # precomputed weights, so the fit costs a few vector operations and two partitions
        x0, y0, x1, y1 = self.face
        ys, xs = np.mgrid[y0:y1:6, x0:x1:6]
        self._centre = np.array([(x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2], np.float32)
        d = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32) - self._centre
        n2 = (d ** 2).sum(1)
        keep = n2 > (0.15 * (x1 - x0)) ** 2  # near the centre scale and rotation are unmeasurable
        self._keep = np.flatnonzero(keep)
        d, n2 = d[keep], n2[keep]
        self._wx = np.ascontiguousarray(d[:, 0] / n2, np.float32)  # scale = g·d/|d|², rot = g×d/|d|²
        self._wy = np.ascontiguousarray(d[:, 1] / n2, np.float32)
        self._half = len(self._keep) // 2
        # ROI centres relative to the face centre: where the similarity's flow is read
        self._qs = [((r[0] + r[2] - 1) / 2 - float(self._centre[0]), (r[1] + r[3] - 1) / 2 - float(self._centre[1]))
                    for r in self.rois.values()]

    def measure_rois(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Mean-flow magnitude per ROI (order of ROI_NAMES) after removing the face's rigid motion."""
        flow = self.dis.calc(a, b, None)
        self.flows += 1
        x0, y0, x1, y1 = self.face
        glob = _median2(flow[y0:y1:3, x0:x1:3].reshape(-1, 2))
        out = np.empty(len(self.rois), np.float32)
        gx, gy = float(glob[0]), float(glob[1])
        if self.rigid:
            g = flow[y0:y1:6, x0:x1:6].reshape(-1, 2)[self._keep] - glob
            h = self._half
            u, v = g[:, 0], g[:, 1]
            scale = float(np.partition(u * self._wx + v * self._wy, h)[h])
            rot = float(np.partition(v * self._wx - u * self._wy, h)[h])
        for i, (rx0, ry0, rx1, ry1) in enumerate(self.rois.values()):
            mx, my = cv2.mean(flow[ry0:ry1, rx0:rx1])[:2]  # C speed; numpy's mean is 5x slower here
            if self.rigid:
                qx, qy = self._qs[i]
                mx -= scale * qx - rot * qy
                my -= scale * qy + rot * qx
            out[i] = ((mx - gx) ** 2 + (my - gy) ** 2) ** 0.5
        return out

    def measure(self, a: np.ndarray, b: np.ndarray) -> tuple[float, str]:
        """(largest ROI motion, its ROI name)."""
        m = self.measure_rois(a, b)
        i = int(np.argmax(m))
        return float(m[i]), ROI_NAMES[i]


def _median2(samples: np.ndarray) -> np.ndarray:
    """np.median(samples, axis=0) of an (n, 2) array, bit for bit, at half its cost.

    Why: it runs on every flow (a tenth of the streamer's time); numpy's general median pays
    for axis handling and NaN checks that two contiguous rows and one partition do without.
    """
    t = np.ascontiguousarray(samples.T)
    n = t.shape[1]
    k = n // 2
    if n % 2:
        return np.partition(t, k, axis=1)[:, k]
    p = np.partition(t, (k - 1, k), axis=1)
    return np.mean(p[:, k - 1:k + 1], axis=1)


MOUTH = np.array([n.startswith("mouth") for n in ROI_NAMES])


def is_blink(rois: np.ndarray, dominance: float = 2.0, mouth_ratio: float = 4.0) -> bool:
    """Both eyes move `dominance`× more than any brow or mouth ROI, or an eye moves
    `mouth_ratio`× more than either mouth corner and at least as much as either brow.

    Why: a blink is the largest fast motion in a calm face and lasts 100–400 ms, exactly a
    micro-expression's length, but it is not an expression (MEGC does not annotate blinks).
    Expressions that involve the lids (AU5-7) move the brows or cheeks/mouth as well. The
    second test catches the blinks the first misses: one lid seen more than the other, and a
    lid's motion bleeding into the other ROIs; expressions move the mouth corners too, and a
    brow-only movement moves its brows more than the lids below (tuning corpus: 24 of 31
    blinks, 1 of 176 micro-expressions).
    """
    eyes, rest = rois[EYES], rois[~EYES]
    if eyes.min() > dominance * rest.max():
        return True
    brows = rois[~EYES & ~MOUTH]
    return bool(mouth_ratio > 0 and eyes.max() > mouth_ratio * rois[MOUTH].max() and eyes.max() >= brows.max())


@dataclass
class _Slot:
    index: int
    ts_ns: int
    grey: np.ndarray
    bgr: np.ndarray | None


def make_meter(cfg) -> MotionMeter:
    """The MotionMeter a SpotterConfig asks for (shared by a camera's tracks)."""
    return MotionMeter(cfg.spot_size, rigid=cfg.motion_model == "similarity")


def spotter_options(cfg, fps: float) -> dict:
    """TrackSpotter keyword arguments from a SpotterConfig beyond the ones Pipeline passes itself
    (so a new spotter option needs no Pipeline change)."""
    return {"short_lag": cfg.after_episode == "anchor",
            "early": cfg.early_reference,
            "prior": tuple(cfg.floor_prior) if cfg.floor_prior else None, "edge_margin": cfg.edge_margin,
            "shape_min": cfg.min_on_shape,
            "min_score": cfg.micro_min_disp * 35.24 * cfg.spot_size / 112.0,
            "blink_mouth_ratio": cfg.blink_mouth_ratio, "seed_gated": cfg.seed_gated}  # ArcFace template eye distance


class TrackSpotter:
    """One face track's state machine: QUIET (learning the floor, watching a(t)) / EPISODE."""

    def __init__(self, track: int, fps: float, k: int, meter: MotionMeter, floor: NoiseFloor,
                 micro_min_ms: float = 65.0, micro_max_ms: float = 500.0, edge_fraction: float = 0.25,
                 max_episode_s: float = 4.0, hold: int | None = None, fixed_threshold: float | None = None,
                 keep_crops: bool = True, end_fraction: float = 0.25, micro_max_score: float = float("inf"),
                 reject_blinks: bool = True, confirm_factor: float = 1.5,
                 short_lag: bool = False, early: bool = False,
                 prior: tuple[float, float] | None = None, edge_margin: float = 0.5,
                 shape_min: bool = False, min_score: float = 0.0,
                 blink_mouth_ratio: float = 4.0, seed_gated: bool = True):
        self.track, self.fps, self.k = track, fps, k
        if prior is not None:
            floor.set_prior(*prior)
        if not seed_gated:
            floor.blend_ungated = True
        self.edge_margin = edge_margin
        self.shape_min = shape_min
        self.min_score = min_score
        self.blink_mouth_ratio = blink_mouth_ratio
        self.short_lag, self.early = short_lag, early
        self._anchor: _Slot | None = None  # the neutral frame an episode returned to
        self.meter, self.floor = meter, floor
        self.micro_min_ms, self.micro_max_ms = micro_min_ms, micro_max_ms
        self.edge_fraction = edge_fraction
        self.end_fraction = end_fraction
        self.micro_max_score = micro_max_score
        self.reject_blinks = reject_blinks
        self.confirm_factor = confirm_factor
        self.max_episode = int(round(max_episode_s * fps))
        self.hold = hold if hold is not None else max(3, k // 4)
        self.fixed_threshold = fixed_threshold
        self.keep_crops = keep_crops
        # a micro event's onset lies at most `micro_span` frames before its apex; the ring keeps
        # k before the trigger + that span + the hold, so a micro event's onset and apex crops
        # are always still here when it is accepted
        self.micro_span = int(micro_max_ms * fps / 1000) + 2
        self.ring_len = k + self.micro_span + self.hold
        self.ring: deque[_Slot] = deque(maxlen=self.ring_len)
        self.a_series: list[tuple[int, float]] = []  # (index, a) when recording for offline rules
        self.record = False
        self.refractory = 0
        self._last_ref = None
        self.episode: dict | None = None
        self.stats = SpotterStats()
        self.decisions: deque[EpisodeDecision] = deque(maxlen=256)
        # explain mode: per frame (index, state, a(t) or r(t), threshold, floor centre) and
        # every continuity break (index, reason); None in production (no per-frame cost)
        self.trace: list[tuple[int, int, float, float, float]] | None = None
        self.breaks: list[tuple[int, str]] = []
        self._last_index = -1
        self._last_r = 0.0

    @property
    def threshold(self) -> float:
        return self.fixed_threshold if self.fixed_threshold is not None else self.floor.threshold

    def break_continuity(self, reason: str = "break") -> None:
        if self.episode is not None:
            self.stats.invalid += 1
            self._decide(self.episode, self._last_index, 0, 0, 0, 0.0, f"invalid:{reason}")
        if self.trace is not None and (self.ring or self.episode is not None):
            self.breaks.append((self._last_index + 1, reason))
        self.episode = None
        self._last_ref = None
        self._anchor = None
        self.ring.clear()
        self.refractory = 0

    def push(self, index: int, ts_ns: int, grey: np.ndarray, bgr: np.ndarray | None) -> SpottedEvent | None:
        self.ring.append(_Slot(index, ts_ns, grey, bgr if self.keep_crops else None))
        self._last_index = index
        tr = self.trace
        if self.episode is not None:
            ev = self._follow()
            if tr is not None:
                tr.append((index, EPISODE, self._last_r, self.threshold, self.floor.median))
            return ev
        ready = self.fixed_threshold is not None or self.floor.ready
        if len(self.ring) <= self.k:
            # fewer than k frames since the track (re)started: with `early`, compare with the
            # first frame instead of waiting k frames (an event right after a re-anchor or at a
            # track's start is otherwise lost); the floor learns only full-lag values
            if not (self.early and ready and len(self.ring) >= 3):
                if tr is not None:
                    tr.append((index, WARMING, float("nan"), self.threshold, self.floor.median))
                return None
            ref = self.ring[0]
            a, _ = self.meter.measure(ref.grey, grey)
            if a > self.threshold:
                self._start(ref_at=0)
            if tr is not None:
                tr.append((index, WATCHING, a, self.threshold, self.floor.median))
            return None
        ref = self.ring[-1 - self.k]
        anchored = False
        if self._anchor is not None:
            # after a returned episode: compare with the neutral frame it returned to until
            # that frame is k old (a shorter lag), instead of a blind refractory period
            if ref.index < self._anchor.index:
                ref, anchored = self._anchor, True
            else:
                self._anchor = None
        a, _ = self.meter.measure(ref.grey, grey)
        if self.record:
            self.a_series.append((index, a))
        if anchored:
            if ready and a > self.threshold and not self._returning(ref.grey, grey):
                if tr is not None:
                    tr.append((index, WATCHING, a, self.threshold, self.floor.median))
                self._start(ref_slot=ref)
                return None
            if tr is not None:
                tr.append((index, REFRACTORY, a, self.threshold, self.floor.median))
            return None
        if self.refractory > 0:
            # k frames after an episode a(t) compares an expressive frame with a neutral one
            self.refractory -= 1
            if tr is not None:
                tr.append((index, REFRACTORY, a, self.threshold, self.floor.median))
            return None
        if ready and a > self.threshold:
            if self._returning(ref.grey, grey):
                self.refractory = self.hold
                if tr is not None:
                    tr.append((index, RETURNING, a, self.threshold, self.floor.median))
                return None
            if tr is not None:
                tr.append((index, WATCHING, a, self.threshold, self.floor.median))
            self._start()
            return None
        if tr is not None:
            tr.append((index, WATCHING if ready else LEARNING, a, self.threshold, self.floor.median))
        self.floor.add(a)
        return None

    def _returning(self, before: np.ndarray, now: np.ndarray) -> bool:
        """Is this motion the face still coming back to the last episode's neutral reference?

        A macro-expression's slow tail can outlast the episode end and the refractory period;
        without this check it would start a new episode from a half-returned face that then
        never "returns". Motion toward the old reference is a tail, not a new event.
        """
        if self._last_ref is None:
            return False
        d_now = self.meter.measure(self._last_ref, now)[0]
        d_before = self.meter.measure(self._last_ref, before)[0]
        return d_now < d_before

    def _start(self, ref_at: int | None = None, ref_slot: _Slot | None = None) -> None:
        ring = list(self.ring)
        if ref_slot is not None:
            at = next(i for i in range(len(ring) - 1, -1, -1) if ring[i] is ref_slot)
        else:
            at = len(ring) - 1 - self.k if ref_at is None else ref_at
        ref = ring[at]
        slots = ring[at:]
        rois = [np.zeros(len(ROI_NAMES), np.float32)] + [self.meter.measure_rois(ref.grey, s.grey) for s in slots[1:]]
        r = [float(v.max()) for v in rois]
        apex = int(np.argmax(r))
        self.episode = {"ref": ref, "slots": slots, "r": r, "rois": rois, "quiet": 0, "apex": apex,
                        "start": self.ring[-1].index}
        self._last_r = r[-1]

    def _follow(self) -> SpottedEvent | None:
        ep = self.episode
        cur = self.ring[-1]
        rois = self.meter.measure_rois(ep["ref"].grey, cur.grey)
        r = float(rois.max())
        self._last_r = r
        ep["slots"].append(cur)
        ep["r"].append(r)
        ep["rois"].append(rois)
        if r > ep["r"][ep["apex"]]:
            old_apex = ep["apex"]
            ep["apex"] = len(ep["r"]) - 1
            self._release_old_peak(ep, old_apex)
        self._release_trailing(ep)
        # back at the reference: below the floor or below end_fraction of the peak (a long
        # episode accumulates alignment drift that keeps r above a k-frame floor), and still:
        # a slow return (a macro-expression's tail) is not over while r keeps falling
        end_level = self.floor.median + self.end_fraction * (ep["r"][ep["apex"]] - self.floor.median)
        low = r < max(self.threshold, end_level)
        recent = ep["r"][-self.hold:]
        still = len(recent) < self.hold or max(recent) - min(recent) < max(self.threshold - self.floor.median, 1e-6)
        ep["quiet"] = ep["quiet"] + 1 if low and still else 0
        if ep["quiet"] >= self.hold:
            return self._finish(returned=True)
        if len(ep["r"]) > self.max_episode:
            return self._finish(returned=False)
        return None

    # Which crops an open episode must keep. Only a micro event's onset and apex crops are
    # ever sent, and its onset lies at most `micro_span` frames before its apex. The apex is
    # either the peak so far (p) or a frame still to come (≥ n, the episode's length), so the
    # crops that can still be needed are those in [p − span, p] and in [n − span, n): every
    # other slot keeps only its index and time. Memory stays bounded (2·span crops) however
    # long the episode, and no micro event loses its crops to a long, restless tail.
    def _release(self, ep: dict, j: int) -> None:
        old = ep["slots"][j]
        if old.grey is not None or old.bgr is not None:
            ep["slots"][j] = _Slot(old.index, old.ts_ns, None, None)

    def _release_trailing(self, ep: dict) -> None:
        """The slot that just left the trailing window goes, unless it is near the peak."""
        j = len(ep["slots"]) - 1 - self.micro_span - 1
        p = ep["apex"]
        if j >= 0 and not p - self.micro_span <= j <= p:
            self._release(ep, j)

    def _release_old_peak(self, ep: dict, old: int) -> None:
        """The peak moved on: the old peak's window, where not in the new one or the trailing one."""
        span, p = self.micro_span, ep["apex"]
        trailing = len(ep["slots"]) - 1 - span
        for j in range(max(0, old - span), min(old + 1, p - span, trailing)):
            self._release(ep, j)

    def _decide(self, ep: dict, end: int, on: int, apex: int, off: int, dur_ms: float, outcome: str,
                why: str = "") -> None:
        slots, r = ep["slots"], ep["r"]
        if outcome.startswith("invalid:"):  # broken before it was judged: report the peak so far
            apex = int(np.argmax(r))
            on, off = 0, len(slots) - 1
        self.decisions.append(EpisodeDecision(ep["start"], end, slots[on].index, slots[apex].index, slots[off].index, float(r[apex]), self.floor.median,
                                              self.threshold, dur_ms, outcome, why,
                                              tuple(float(v) for v in ep["rois"][apex])))

    def flush(self) -> SpottedEvent | None:
        """End of stream: an open episode is judged on what was seen."""
        if self.episode is None:
            return None
        return self._finish(returned=False)

    def _finish(self, returned: bool) -> SpottedEvent | None:
        ep = self.episode
        self.episode = None
        self.refractory = self.k if not (self.short_lag and returned) else 0
        self._anchor = ep["slots"][-1] if (self.short_lag and returned) else None
        self._last_ref = ep["ref"].grey if returned else None
        r = np.asarray(ep["r"], np.float64)
        slots = ep["slots"]
        apex = int(np.argmax(r))
        base = min(self.floor.median, float(r[apex]))
        # the fraction of the peak, but not inside the noise: at least halfway to the trigger
        level = max(base + self.edge_fraction * (float(r[apex]) - base), base + self.edge_margin * max(0.0, self.threshold - base))
        on = apex
        while on > 0 and r[on - 1] >= level:
            on -= 1
        off = apex
        while off < len(r) - 1 and r[off + 1] >= level:
            off += 1
        if not returned:
            off = len(r) - 1  # still away from the reference: the expression is held
        s_on, s_apex, s_off = slots[on], slots[apex], slots[off]
        dur_ms = (s_off.ts_ns - s_on.ts_ns) / 1e6 + 1000.0 / self.fps
        end = slots[-1].index

        def decide(outcome: str, why: str = "") -> None:
            self._decide(ep, end, on, apex, off, dur_ms, outcome, why)

        # weak: below the hysteresis, or a movement too small to be a face's (a floor learnt on
        # a very still, clean face can sit at a few hundredths of a pixel)
        if (float(r[apex]) - base < self.confirm_factor * max(self.threshold - base, 0.0)
                or float(r[apex]) - base < self.min_score):
            self.stats.weak += 1  # triggered by a noise excursion, never rose clearly above the floor
            decide("weak")
            return None
        # the width at `level` is shorter than the movement: a smooth (raised-cosine-like) onset
        # and return spend acos(1 - 2f)/pi of their time below the fraction f of the peak. The
        # minimum length is judged on the same footing (else every event under ~80 ms is "too short")
        f = min(max((level - base) / max(float(r[apex]) - base, 1e-9), 0.0), 1.0)
        short_limit = self.micro_min_ms * (1.0 - math.acos(1.0 - 2.0 * f) / math.pi) if self.shape_min else self.micro_min_ms
        if dur_ms < short_limit:
            self.stats.too_short += 1
            decide("too_short")
            return None
        if not returned and dur_ms <= self.micro_max_ms:
            self.stats.invalid += 1  # the stream ended inside a short episode: unknown kind
            decide("unfinished")
            return None
        if not returned and float(r[apex]) < self.micro_max_score:
            # a held change weaker than an expression: residual head motion or light, not a face
            self.stats.drift += 1
            decide("drift")
            return None
        apex_rois = ep["rois"][apex]
        roi = ROI_NAMES[int(np.argmax(apex_rois))]
        if self.reject_blinks and is_blink(apex_rois, mouth_ratio=self.blink_mouth_ratio) and dur_ms <= self.micro_max_ms:
            self.stats.blinks += 1
            decide("blink")
            return None
        # micro-expressions are short AND subtle: a strong episode is macro whatever its length
        subtle = float(r[apex]) <= self.micro_max_score
        kind = "micro" if returned and dur_ms <= self.micro_max_ms and subtle else "macro"
        if kind == "micro":
            self.stats.micro += 1
            decide("micro")
        else:
            self.stats.macro += 1
            decide("macro", "held" if not returned else "long" if dur_ms > self.micro_max_ms else "strong")
        return SpottedEvent(self.track, s_on.index, s_apex.index, s_off.index, s_on.ts_ns, s_apex.ts_ns, s_off.ts_ns,
                     float(r[apex] - base), kind, roi,
                     onset_crop=s_on.bgr if kind == "micro" else None,
                     apex_crop=s_apex.bgr if kind == "micro" else None)
