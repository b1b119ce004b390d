"""In-memory training data: aligned (onset, apex) wire crops + the frames for the teacher's Eq. 1.

WHY in memory: micro-expression sets are a few hundred pairs; at 112 px uint8 that is a few
tens of MB, so a tensor per batch is cheaper than a DataLoader with workers on 2 cores.

The pairs are the project's one `PairSet` (`calibration.pairs`): BGR uint8 crops as the
daemon sends them, and `to_tensor` is `engine.tensors.crops_to_nchw`, the engine's own
conversion, so training feeds the network exactly the numbers the engine feeds it.
"""

from __future__ import annotations

import numpy as np
import torch

from calibration.pairs import PairSet
from engine.tensors import crops_to_nchw

__all__ = ["PairSet", "to_tensor"]


def to_tensor(batch: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 NHWC BGR wire crops -> float32 NCHW RGB in [0, 1] (the model's input contract)."""
    return torch.from_numpy(crops_to_nchw(batch)).to(device)
