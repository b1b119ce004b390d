"""Staged MFVAN training: pretrain teacher -> teacher+student (apex -> onset) -> joint (Eq. 9)."""

from trainer.train.data import PairSet
from trainer.train.loop import STAGES, predict, resolve_device, train

__all__ = ["STAGES", "PairSet", "predict", "resolve_device", "train"]
