"""Wire crops → network input, network heatmaps → wire heatmaps.

Why one module: the server, the benchmark, calibration and the parity tests must feed the
network exactly the same numbers, or a backend comparison measures preprocessing drift
instead of the backend. The contract: wire crops are aligned BGR uint8 (S, S, 3); the network
takes RGB float32 [0, 1] NCHW (any further normalisation lives inside the model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np


def crops_to_nchw(crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """(B, S, S, 3) or a list of (S, S, 3) BGR uint8 → float32 (B, 3, S, S) RGB in [0, 1]."""
    batch = np.asarray(crops) if isinstance(crops, np.ndarray) else np.stack(crops)
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
        raise ValueError(f"expected (B, S, S, 3) uint8 crops, got {batch.shape} {batch.dtype}")
    out = np.empty((batch.shape[0], 3, batch.shape[1], batch.shape[2]), dtype=np.float32)
    # BGR→RGB and HWC→CHW in one strided copy, then scale in place
    np.multiply(batch[..., ::-1].transpose(0, 3, 1, 2), np.float32(1.0 / 255.0), out=out, casting="unsafe")
    return out


def input_form(manifest: Any) -> str:
    """The network input form an artefact's model was built for (`model.input_form` of the
    model config the builder copies into the manifest's `source`); "onset_apex" when absent."""
    if isinstance(manifest, str):
        return manifest
    source = getattr(manifest, "source", None) or {}
    cfg = source.get("model_config") if isinstance(source, dict) else None
    return str(cfg.get("input_form", "onset_apex")) if isinstance(cfg, dict) else "onset_apex"


def pair_inputs(onsets: Sequence[np.ndarray] | np.ndarray, apexes: Sequence[np.ndarray] | np.ndarray,
                manifest: Any = "onset_apex") -> tuple[np.ndarray, np.ndarray]:
    """Wire crop pairs → the network's two inputs, as the artefact's model takes them.

    Every form: the apex as `crops_to_nchw`. The first input is the onset the same way, except
    for `input_form: motion` models, where it is the onset → apex motion (u, v, strain;
    `engine.motion`), the one flow the trainer trained on. `manifest` is an artefact Manifest
    or an input form name.
    """
    apex = crops_to_nchw(apexes)
    if input_form(manifest) == "motion":
        from engine.motion import motion_nchw

        return motion_nchw(onsets, apexes), apex
    return crops_to_nchw(onsets), apex


def upsample_heatmaps(heatmaps: np.ndarray, size: int, dtype: str = "uint8") -> np.ndarray:
    """(C, g, g) float in [0, 1] → (C, size, size) uint8 (0..255) or float16, bilinear.

    Bilinear because the maps are coarse attention grids over the crop; subscribers overlay
    them on the S×S crop directly.
    """
    if heatmaps.ndim != 3:
        raise ValueError(f"expected (C, g, g) heatmaps, got {heatmaps.shape}")
    hwc = np.ascontiguousarray(heatmaps.transpose(1, 2, 0), dtype=np.float32)
    up = cv2.resize(hwc, (size, size), interpolation=cv2.INTER_LINEAR)
    if up.ndim == 2:  # cv2 drops a single channel axis
        up = up[:, :, None]
    up = np.clip(up.transpose(2, 0, 1), 0.0, 1.0)
    if dtype == "uint8":
        return np.ascontiguousarray(np.rint(up * 255.0).astype(np.uint8))
    if dtype == "float16":
        return np.ascontiguousarray(up.astype(np.float16))
    raise ValueError(f"heatmap dtype {dtype!r} not in ('uint8', 'float16')")
