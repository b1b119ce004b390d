"""Online noise floor: running median + c·MAD of a track's own quiet motion.

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
                 seed: tuple[float, float] | None = None):
        self.c = c
        self.values: deque[float] = deque(maxlen=window)
        self.warmup = warmup
        self.refresh = refresh
        self._n_since = 0
        self.median = 0.0
        self.mad = 0.0
        self.seeded = seed is not None
        if seed is not None:
            self.median, self.mad = float(seed[0]), float(seed[1])

    @property
    def ready(self) -> bool:
        return self.seeded or len(self.values) >= self.warmup

    @property
    def threshold(self) -> float:
        # a MAD of exactly 0 (a perfectly still synthetic stretch) would make any motion an event
        return self.median + self.c * MAD_TO_SIGMA * max(self.mad, 1e-3 + 0.05 * self.median)

    def add(self, value: float) -> None:
        self.values.append(value)
        self._n_since += 1
        if self._n_since >= self.refresh and len(self.values) >= min(self.warmup, 16):
            self._n_since = 0
            arr = np.fromiter(self.values, np.float64, len(self.values))
            med = float(np.median(arr))
            mad = float(np.median(np.abs(arr - med)))
            if self.seeded and len(self.values) < self.warmup:
                # blend a calibration seed with the first live values
                w = len(self.values) / self.warmup
                med = (1 - w) * self.median + w * med
                mad = (1 - w) * self.mad + w * mad
            self.median, self.mad = med, mad


def published_threshold(values: np.ndarray, p: float) -> float:
    """The MEGC baseline rule over a whole clip: mean + p·(max − mean). Offline only."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return float("inf")
    return float(v.mean() + p * (v.max() - v.mean()))
