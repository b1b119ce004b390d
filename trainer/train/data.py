"""In-memory training data: aligned (onset, apex) crops + the frames for the teacher's Eq. 1.

WHY in memory: micro-expression sets are a few hundred pairs; at 112 px RGB uint8 that is a
few tens of MB, so a tensor per batch is cheaper than a DataLoader with workers on 2 cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class PairSet:
    onset: np.ndarray  # uint8 [N, S, S, 3] RGB
    apex: np.ndarray  # uint8 [N, S, S, 3] RGB
    labels: np.ndarray  # int64 [N]
    subjects: np.ndarray  # str [N]
    clips: list[str]
    label_names: list[str]
    frames: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 3), np.uint8))  # uint8 [M,S,S,3]
    frame_subjects: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=object))

    def __post_init__(self) -> None:
        n = len(self.labels)
        if not (len(self.onset) == len(self.apex) == len(self.subjects) == len(self.clips) == n):
            raise ValueError("PairSet: onset, apex, labels, subjects and clips differ in length")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.subjects = np.asarray(self.subjects, dtype=object)
        if len(self.frames) == 0:
            self.frames = np.zeros((0, *self.onset.shape[1:]), np.uint8)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def crop_size(self) -> int:
        return int(self.onset.shape[1])

    def subject_list(self) -> list[str]:
        return sorted(set(self.subjects.tolist()))

    def select_subjects(self, keep: set[str]) -> PairSet:
        idx = np.array([s in keep for s in self.subjects], dtype=bool)
        fidx = np.array([s in keep for s in self.frame_subjects], dtype=bool) if len(self.frames) else idx[:0]
        return PairSet(
            onset=self.onset[idx],
            apex=self.apex[idx],
            labels=self.labels[idx],
            subjects=self.subjects[idx],
            clips=[c for c, k in zip(self.clips, idx, strict=True) if k],
            label_names=self.label_names,
            frames=self.frames[fidx] if len(self.frames) else self.frames,
            frame_subjects=self.frame_subjects[fidx] if len(self.frames) else self.frame_subjects,
        )

    def pretrain_frames(self) -> np.ndarray:
        """Every frame the teacher reconstructs: the extra frames plus every onset and apex."""
        return np.concatenate([self.frames, self.onset, self.apex], axis=0)


def to_tensor(batch: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 NHWC RGB -> float32 NCHW in [0, 1] (the model's input contract)."""
    return torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
