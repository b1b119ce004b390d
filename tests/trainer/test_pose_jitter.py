"""`data.pose_jitter`: one random similarity per training pair and epoch, the same for both frames.

The event's motion must survive (the onset and apex move together), the face's pose and place in
the crop must change, and a motion-form model must train on the flow of the jittered pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.motion import motion_nchw
from trainer.config.train import TrainConfig
from trainer.train.loop import pose_jittered

torch.set_num_threads(1)


def crops(n: int, s: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (n, s // 4, s // 4, 3), dtype=np.uint8)
    return np.ascontiguousarray(base.repeat(4, axis=1).repeat(4, axis=2))


def test_same_similarity_on_both_frames() -> None:
    a = crops(6)
    on, ap = pose_jittered(a, a.copy(), [15.0, 0.1, 3.0], np.random.default_rng(1))
    assert np.array_equal(on, ap)  # identical frames stay identical: no motion is invented
    assert not np.array_equal(on, a)  # but the pose changed
    assert on.dtype == np.uint8 and on.shape == a.shape


def test_zero_jitter_is_identity_and_motion_survives() -> None:
    a = crops(4, seed=2)
    on, ap = pose_jittered(a, a, [0.0, 0.0, 0.0], np.random.default_rng(0))
    assert np.array_equal(on, a) and np.array_equal(ap, a)
    shifted = np.roll(a, 1, axis=2)  # a 1 px rightward "event"
    on, ap = pose_jittered(a, shifted, [0.0, 0.0, 2.0], np.random.default_rng(3))
    u = motion_nchw(on, ap)[:, 0, 12:36, 12:36]
    assert 0.5 < float(np.median(u)) < 1.5  # a pure shift of the pair leaves the 1 px motion


def test_jitter_is_validated() -> None:
    with pytest.raises(ValueError):
        TrainConfig.model_validate({"data": {"pose_jitter": [1.0, 2.0]}})


def test_motion_model_trains_on_the_flow_of_the_jittered_pixels(monkeypatch) -> None:
    from calibration.pairs import PairSet
    from trainer.train import loop

    on = crops(12, seed=4)
    ap = np.roll(on, 1, axis=2)
    data = PairSet(onset=on, apex=ap, labels=np.arange(12) % 3, label_names=["negative", "positive", "surprise"],
                   subjects=[f"sub{i % 3}" for i in range(12)])
    seen: list[np.ndarray] = []
    real = loop.motion_cache
    monkeypatch.setattr(loop, "motion_cache", lambda d, flip: (seen.append(d.onset), real(d, flip))[1])
    stage = {"epochs": 2, "batch_size": 6}
    cfg = TrainConfig.model_validate({
        "model": {"name": "mfvan_lite", "input_form": "motion", "crop_size": 48, "grid": 6, "embed_dim": 16, "heads": 2,
                  "depth": 1},
        "data": {"pose_jitter": [10.0, 0.05, 2.0], "pretrain_frames": 0},
        "pretrain": {"epochs": 0}, "remove": {"epochs": 1, "batch_size": 6}, "joint": stage})
    losses: list[float] = []
    loop.train(cfg, data, device=torch.device("cpu"), progress=False,
               on_epoch=lambda s, e, m: losses.append(m.get("all", m.get("remove", 0.0))))
    assert len(seen) == 2  # the joint stage's flow, once per epoch, from that epoch's poses
    assert not np.array_equal(seen[0], on) and not np.array_equal(seen[0], seen[1])
    assert all(np.isfinite(losses))
