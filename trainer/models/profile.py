"""Parameter count, size and FLOPs of the inference module (torch.utils.flop_counter)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from trainer.models.mfvan import MFVAN, export_module


def profile(model: MFVAN) -> dict[str, Any]:
    """FLOPs of one (onset, apex) pair through the exported module; parameters split into
    what inference runs (everything but the teacher) and the training-only teacher."""
    module = export_module(model)
    s = model.cfg.crop_size
    x = torch.rand(1, 3, s, s)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        module(x, x)
    total = sum(p.numel() for p in model.parameters())
    teacher = sum(p.numel() for p in model.teacher.parameters())
    return {
        "crop_size": s,
        "gflops_per_pair": fc.get_total_flops() / 1e9,
        "params_total": total,
        "params_inference": total - teacher,
        "params_teacher": teacher,
        "size_mb_fp32_inference": (total - teacher) * 4 / 2**20,
    }


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
