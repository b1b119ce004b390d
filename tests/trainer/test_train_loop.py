"""Staged training: runs, learns a toy task, resumes exactly, checkpoints every stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainer.checkpoint import load_checkpoint
from trainer.config.train import ModelConfig, StageConfig, TrainConfig
from trainer.train import PairSet, predict, train

torch.set_num_threads(1)
S = 32


def toy_pairs(n_subjects: int = 4, per_class: int = 4, seed: int = 0) -> PairSet:
    """Class c = a brightening blob in region c between onset and apex, on random 'faces'."""
    rng = np.random.default_rng(seed)
    onset, apex, labels, subjects, clips = [], [], [], [], []
    spots = [(4, 4), (4, 20), (20, 12)]
    for s in range(n_subjects):
        face = rng.integers(40, 200, (S, S, 3)).astype(np.float32)
        for c in range(3):
            for k in range(per_class):
                o = np.clip(face + rng.normal(0, 3, face.shape), 0, 255)
                a = o.copy()
                y, x = spots[c]
                a[y : y + 8, x : x + 8] += 40
                onset.append(o.astype(np.uint8))
                apex.append(np.clip(a, 0, 255).astype(np.uint8))
                labels.append(c)
                subjects.append(f"sub{s:02d}")
                clips.append(f"sub{s:02d}/c{c}_{k}")
    return PairSet(onset=np.stack(onset), apex=np.stack(apex), labels=np.array(labels), subjects=subjects, clips=clips,
                   label_names=["negative", "positive", "surprise"])


def small_cfg(**joint) -> TrainConfig:
    st = StageConfig(epochs=1, lr=2e-3, batch_size=8)
    return TrainConfig(
        device="cpu",
        model=ModelConfig(crop_size=S, grid=4, embed_dim=32, heads=2, depth=1, input_form="onset_apex"),
        pretrain=st,
        remove=st,
        joint=StageConfig(**{"epochs": 2, "lr": 2e-3, "batch_size": 8, **joint}),
    )


def test_stages_write_checkpoints_and_resume_bit_exactly(tmp_path: Path) -> None:
    data = toy_pairs()
    seen: list[tuple[str, int]] = []
    full = train(small_cfg(), data, out_dir=tmp_path / "a", progress=False, on_epoch=lambda s, e, _: seen.append((s, e)))
    assert seen == [("pretrain", 1), ("remove", 1), ("joint", 1), ("joint", 2)]
    for stage in ("pretrain", "remove", "joint"):
        blob = load_checkpoint(tmp_path / "a" / f"{stage}.ckpt")
        assert blob["stage"] == stage and "optimizer" in blob and blob["labels"] == data.label_names
    # interrupted after joint epoch 1, then resumed: same weights as the uninterrupted run
    train(small_cfg(epochs=1), data, out_dir=tmp_path / "b", progress=False)
    seen.clear()
    resumed = train(small_cfg(), data, out_dir=tmp_path / "b", progress=False, on_epoch=lambda s, e, _: seen.append((s, e)))
    assert seen == [("joint", 2)]
    for (k, v), (k2, v2) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k


def test_learns_a_toy_task_and_predicts() -> None:
    data = toy_pairs(n_subjects=3, per_class=6)
    cfg = small_cfg(epochs=12)
    losses: list[float] = []
    model = train(cfg, data, progress=False, on_epoch=lambda s, e, m: losses.append(m["all"]) if s == "joint" else None)
    assert losses[-1] < 0.6 * losses[0]
    probs, heat = predict(model, data)
    assert probs.shape == (len(data), 3) and heat.shape == (len(data), 4, 4, 4)
    acc = float((probs.argmax(1) == data.labels).mean())
    assert acc > 0.8, acc


def test_no_identity_removal_skips_the_reconstruction_stages() -> None:
    cfg = small_cfg()
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"identity_removal": False})})
    seen: list[str] = []
    train(cfg, toy_pairs(n_subjects=2, per_class=2), progress=False, on_epoch=lambda s, e, _: seen.append(s))
    assert seen == ["joint", "joint"]


def test_weight_average_replaces_the_weights_and_resumes_bit_exactly(tmp_path: Path) -> None:
    data = toy_pairs()
    plain = train(small_cfg(epochs=3), data, progress=False)
    full = train(small_cfg(epochs=3, ema=0.9), data, out_dir=tmp_path / "a", progress=False)
    assert any(not torch.equal(v, v2) for v, v2 in zip(plain.state_dict().values(), full.state_dict().values(), strict=True))
    assert "ema" not in load_checkpoint(tmp_path / "a" / "joint.ckpt")["extra"]  # the finished stage holds the average

    def stop(stage: str, epoch: int, _: object) -> None:
        if stage == "joint" and epoch == 2:
            raise KeyboardInterrupt

    try:  # killed during joint epoch 2: the checkpoint holds epoch 1 and the average so far
        train(small_cfg(epochs=3, ema=0.9), data, out_dir=tmp_path / "b", progress=False, on_epoch=stop)
    except KeyboardInterrupt:
        pass
    assert "ema" in load_checkpoint(tmp_path / "b" / "joint.ckpt")["extra"]
    resumed = train(small_cfg(epochs=3, ema=0.9), data, out_dir=tmp_path / "b", progress=False)
    for (k, v), (k2, v2) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k
