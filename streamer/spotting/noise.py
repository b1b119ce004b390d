"""Online noise floor: running median + c·MAD of a track's own quiet motion (robust form).

Why not the published mean + p·(max − mean): a live stream has no maximum, and one strong
event raises a clip-wide threshold above every weaker one. The median and the MAD of recent
*quiet* frames (frames inside an episode are not fed) follow the subject's own neutral motion
and are robust to the occasional outlier. `calibration/noise_floor.py` can seed them from a
neutral recording so a new subject does not need a warm-up.
"""

from __future__ import annotations

from collections import deque

import numpy as np

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


class NoiseFloor:
    def __init__(self, c: float = 6.0, window: int = 1000, warmup: int = 200, refresh: int = 16,
                 seed: tuple[float, float] | None = None, trust_seed: bool = True):
        self.c = c
        self.values: deque[float] = deque(maxlen=window)
        self.warmup = warmup
        self.refresh = refresh
        self._n_since = 0
        self.median = 0.0
        self.mad = 0.0
        self.seeded = seed is not None
        self.prior = False  # seeded by a population prior, not by this subject's calibration
        # learn ungated while a seed is blended out: True for a prior; for a calibration seed
        # when `trust_seed` is False (a seed from a still, event-free recording can sit below
        # the floor of the same face in conversation, and a gated floor could never rise to it)
        self.blend_ungated = not trust_seed
        if seed is not None:
            self.median, self.mad = float(seed[0]), float(seed[1])

    def set_prior(self, median: float, mad: float) -> None:
        """Start from a population prior when there is no calibration seed.

        Why: without a seed the floor needs k + warm-up frames (~0.5 s) before anything can
        fire, and a clip's or a track's first events are lost. The prior is blended out by the
        first `warmup` live values, and while it is, values are not gated: a prior too low for
        a noisy face must not stop the floor from learning that face's noise.
        """
        if self.seeded:
            return
        self.median, self.mad = float(median), float(mad)
        self.seeded = self.prior = self.blend_ungated = True

    @property
    def ready(self) -> bool:
        return self.seeded or len(self.values) >= self.warmup

    @property
    def threshold(self) -> float:
        # a MAD of exactly 0 (a perfectly still synthetic stretch) would make any motion an event
        return self.median + self.c * MAD_TO_SIGMA * max(self.mad, 1e-3 + 0.05 * self.median)

    @property
    def gate(self) -> float:
        """Values above this are not learnt once the floor is ready: half-way to the trigger.

        Without the gate, sub-threshold motion (weak events, a slow expression) is fed back,
        raises the floor, hides more motion, and the floor drifts upward on a busy face.
        """
        return self.median + 0.5 * (self.threshold - self.median)

    def add(self, value: float) -> None:
        if self.ready and value > self.gate and not (self.blend_ungated and len(self.values) < self.warmup):
            return
        self.values.append(value)
        self._n_since += 1
        if self._n_since >= self.refresh and len(self.values) >= min(self.warmup, 16):
            self._n_since = 0
            med, mad = robust_floor(np.fromiter(self.values, np.float64, len(self.values)))
            if self.seeded and len(self.values) < self.warmup:
                # blend a calibration seed with the first live values
                w = len(self.values) / self.warmup
                med = (1 - w) * self.median + w * med
                mad = (1 - w) * self.mad + w * mad
            self.median, self.mad = med, mad


def robust_floor(values: np.ndarray) -> tuple[float, float]:
    """(centre, MAD-equivalent spread) of the noise, read from the *lower* quantiles.

    Why not the plain median and MAD: until the floor is ready every value is fed, events
    included, and a busy stretch can be half events; the median then sits inside the events
    and the MAD measures them. The 5th and 25th percentiles stay in the stillness even when
    half the values are motion: for a normal noise q25 − q5 = 0.97 σ and the median is
    q25 + 0.674 σ. With no events this equals median/MAD; with many it errs high (safe side).
    """
    q5, q25 = np.percentile(values, [5, 25])
    sigma = max(float(q25 - q5) / 0.971, 0.0)
    centre = float(q25) + 0.674 * sigma
    return centre, sigma / MAD_TO_SIGMA


def published_threshold(values: np.ndarray, p: float) -> float:
    """The MEGC baseline rule over a whole clip: mean + p·(max − mean). Offline only."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return float("inf")
    return float(v.mean() + p * (v.max() - v.mean()))
