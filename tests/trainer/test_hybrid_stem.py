"""Issue 14's hybrid options: scale 1's conv stem (`model.stem: conv`), the stage lr schedule
(`schedule`, `warmup_epochs`) and the per-stage motion cache of the training loop.

The conv stem must give the same g x g token grid as the plain patch conv, export to ONNX and
match torch through the engine's own pre-processing, and leave every Table 3 row runnable;
the cache must hold exactly the motion `motion_of` computes from the (flipped) batch tensors.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from tests.helpers.onnx_parity import assert_onnx_matches_torch
from trainer.config.train import ModelConfig, StageConfig, TrainConfig
from trainer.evaluate.loso import main, save_pairs
from trainer.evaluate.protocol import ABLATION_ROWS
from trainer.models import create_model, export_module
from trainer.models.attention import ScaleTransformer
from trainer.models.mfvan import motion_of
from trainer.train import train
from trainer.train.data import to_tensor
from trainer.train.loop import lr_factor, motion_cache
from trainer.train.toy import toy_pairs

torch.set_num_threads(1)
cv2.setNumThreads(1)
S = 48


def cfg(**kw) -> ModelConfig:
    return ModelConfig(**{"name": "mfvan_lite", "input_form": "motion", "crop_size": S, "grid": 6, "embed_dim": 32,
                          "heads": 2, "depth": 1, "stem": "conv", **kw})


@pytest.mark.parametrize("size, grid", [(48, 6), (112, 7), (48, 16), (42, 6), (48, 2)])
def test_conv_stem_keeps_the_token_grid(size: int, grid: int) -> None:
    t = ScaleTransformer(7, size, grid, 32, 1, 2, stem="conv")
    tokens, fc = t(torch.randn(2, 7, size, size))
    assert tokens.shape == (2, grid * grid + 1, 32) and fc.shape == (2, grid * grid)
    halvings = sum(isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2) and m.kernel_size == (3, 3) for m in t.embed)
    patch = size // grid
    assert halvings == min(2, (patch & -patch).bit_length() - 1)  # stride-2 convs while the patch stays even


def test_default_stem_is_the_papers_patch_conv() -> None:
    assert ModelConfig().stem == "patch"
    model = create_model(cfg(stem="patch"))
    assert isinstance(model.transformers["1"].embed, torch.nn.Conv2d)
    hybrid = create_model(cfg())
    assert isinstance(hybrid.transformers["1"].embed, torch.nn.Sequential)
    assert isinstance(hybrid.transformers["2"].embed, torch.nn.Conv2d)  # the stem is scale 1's only
    with pytest.raises(ValueError):
        ScaleTransformer(3, 48, 6, 32, 1, 2, stem="nope")


def test_conv_stem_trains_exports_and_matches_torch(tmp_path) -> None:
    torch.manual_seed(0)
    c = cfg()
    model = create_model(c)
    onset, apex = torch.rand(4, 3, S, S), torch.rand(4, 3, S, S)
    out = model(onset, apex, with_teacher=True)
    out["logits"].sum().backward()
    assert model.transformers["1"].embed[0].weight.grad.abs().sum() > 0
    probs, heat = assert_onnx_matches_torch(model, c, S, tmp_path)
    assert probs.shape == (2, 3) and heat.shape == (2, 4, 6, 6)


@pytest.mark.parametrize("form", ["motion", "apex", "onset_apex"])
@pytest.mark.parametrize("row, changes", ABLATION_ROWS)
def test_table3_rows_run_with_the_conv_stem(form: str, row: str, changes: dict) -> None:
    model = export_module(create_model(cfg(input_form=form, **changes)))
    with torch.no_grad():
        probs, heat = model(torch.randn(2, 3, S, S) * 0.5, torch.rand(2, 3, S, S))
    assert probs.shape == (2, 3) and heat.shape == (2, 4, 6, 6), row


def test_lr_schedule() -> None:
    const = StageConfig(epochs=4, lr=1e-3)
    assert [lr_factor(const, s, 10) for s in (0, 17, 39)] == [1.0, 1.0, 1.0]  # the default: as before
    cos = StageConfig(epochs=4, lr=1e-3, schedule="cosine", warmup_epochs=1.0)
    f = [lr_factor(cos, s, 10) for s in range(40)]
    assert f[0] == pytest.approx(0.01) and f[5] == pytest.approx(0.01 + 0.99 * 0.5)  # linear warm-up
    assert f[10] == pytest.approx(1.0) and f[39] == pytest.approx(0.01)  # cosine from the peak to 1/100
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))


def test_motion_cache_is_what_training_would_compute() -> None:
    data = toy_pairs(n_subjects=1, per_class=2, size=S)
    plain, flipped = motion_cache(data, flip=True)
    on, ap = to_tensor(data.onset), to_tensor(data.apex)
    np.testing.assert_array_equal(plain.numpy(), motion_of(on, ap).numpy())
    np.testing.assert_array_equal(flipped.numpy(), motion_of(on.flip(3), ap.flip(3)).numpy())
    assert motion_cache(data, flip=False)[1] is None


def test_hybrid_recipe_trains() -> None:
    data = toy_pairs(n_subjects=2, per_class=2, size=S)
    stage = {"epochs": 1, "lr": 2e-3, "batch_size": 4}
    tc = TrainConfig(device="cpu", model=cfg(), pretrain=StageConfig(**stage), remove=StageConfig(**stage),
                     joint=StageConfig(epochs=2, lr=2e-3, batch_size=4, schedule="cosine", warmup_epochs=0.5))
    seen: list[tuple[str, int]] = []
    model = train(tc, data, progress=False, on_epoch=lambda s, e, _: seen.append((s, e)))
    assert seen == [("pretrain", 1), ("remove", 1), ("joint", 1), ("joint", 2)]
    assert not model.training


def test_skip_folds_leaves_out_the_selection_subjects(tmp_path) -> None:
    d = toy_pairs(n_subjects=3, per_class=2, size=32)
    save_pairs(tmp_path / "p.npz", d)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("device: cpu\nmodel: {crop_size: 32, grid: 4, embed_dim: 16, heads: 2, depth: 1}\n")
    out = tmp_path / "o"
    assert main(["--config", str(cfg_file), "--pairs", str(tmp_path / "p.npz"), "--out", str(out), "--models", "lbptop",
                 "--skip-folds", "1", "--no-progress"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert [f["subject"] for f in rep["models"]["lbptop"]["folds"]] == ["sub01", "sub02"]
    assert rep["protocol"]["folds_skipped"] == ["sub00"] and "--skip-folds 1" in (out / "results.md").read_text()
