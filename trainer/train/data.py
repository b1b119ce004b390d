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
    # frames strictly between onset and apex, in time order, for the teacher's Eq. 1 and the
    # LBP-TOP baseline's sequence; frame_owner[k] = index of the pair frame k belongs to
    frames: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 3), np.uint8))
    frame_owner: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    def __post_init__(self) -> None:
        n = len(self.labels)
        if not (len(self.onset) == len(self.apex) == len(self.subjects) == len(self.clips) == n):
            raise ValueError("PairSet: onset, apex, labels, subjects and clips differ in length")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.subjects = np.asarray(self.subjects, dtype=object)
        self.frame_owner = np.asarray(self.frame_owner, dtype=np.int64)
        if len(self.frames) == 0:
            self.frames = np.zeros((0, *self.onset.shape[1:]), np.uint8)
        if len(self.frames) != len(self.frame_owner):
            raise ValueError("PairSet: frames and frame_owner differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def crop_size(self) -> int:
        return int(self.onset.shape[1])

    def subject_list(self) -> list[str]:
        return sorted(set(self.subjects.tolist()))

    def take(self, idx: np.ndarray) -> PairSet:
        """The pairs at integer positions `idx` (and their frames)."""
        idx = np.asarray(idx, dtype=np.int64)
        remap = np.full(len(self), -1, np.int64)
        remap[idx] = np.arange(len(idx))
        fkeep = remap[self.frame_owner] >= 0 if len(self.frames) else np.zeros(0, bool)
        return PairSet(
            onset=self.onset[idx],
            apex=self.apex[idx],
            labels=self.labels[idx],
            subjects=self.subjects[idx],
            clips=[self.clips[i] for i in idx],
            label_names=self.label_names,
            frames=self.frames[fkeep],
            frame_owner=remap[self.frame_owner[fkeep]] if len(self.frames) else self.frame_owner,
        )

    def select_subjects(self, keep: set[str] | list[str]) -> PairSet:
        keep = set(keep)
        return self.take(np.flatnonzero([s in keep for s in self.subjects]))

    def sequence(self, i: int) -> np.ndarray:
        """onset, the frames between, apex: [T, S, S, 3] in time order."""
        mid = self.frames[self.frame_owner == i]
        return np.concatenate([self.onset[i : i + 1], mid, self.apex[i : i + 1]], axis=0)

    def pretrain_frames(self) -> np.ndarray:
        """Every frame the teacher reconstructs: the in-between frames plus every onset and apex."""
        return np.concatenate([self.frames, self.onset, self.apex], axis=0)


def to_tensor(batch: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 NHWC RGB -> float32 NCHW in [0, 1] (the model's input contract)."""
    return torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
