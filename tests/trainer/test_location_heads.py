"""Issue 14's location-keeping options: the global head's `model.global_pool: flatten`, each scale's
`model.scale_pool: flatten` and the global branch's own head and focal loss (`model.global_logits`);
then the fusion recipe's Eq. 7 on concatenated branch vectors (`model.fusion: concat`) and a global
head with a finer last map (`model.global_strides`, `model.global_dropout`).

Defaults must build the paper's model exactly as before (same parameters, same initialisation); the
new forms must keep the g x g heatmaps, train, export to ONNX and match torch, and leave every
Table 3 row runnable.
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers.onnx_parity import assert_onnx_matches_torch
from trainer.config.train import LossConfig, ModelConfig
from trainer.evaluate.protocol import ABLATION_ROWS
from trainer.losses import class_alpha, total_loss
from trainer.models import create_model, export_module
from trainer.models.parts import GlobalHead

torch.set_num_threads(1)
S = 48


def cfg(**kw) -> ModelConfig:
    return ModelConfig(**{"name": "mfvan_lite", "input_form": "motion", "crop_size": S, "grid": 6, "embed_dim": 32,
                          "heads": 2, "depth": 1, "stem": "conv", **kw})


LOC = {"global_pool": "flatten", "scale_pool": "flatten", "global_logits": True}


def test_defaults_are_the_papers_and_unchanged() -> None:
    m = ModelConfig()
    assert (m.global_pool, m.scale_pool, m.global_logits) == ("gap", "mean", False)
    assert (m.fusion, m.global_strides, m.global_dropout) == ("mean", 4, 0.0)
    torch.manual_seed(0)
    a = create_model(cfg())
    assert a.global_logits is None and a.scale_proj is None and a.global_head.proj.in_features == 64
    torch.manual_seed(0)
    b = create_model(cfg(**LOC))
    # the autoencoders are built before the global head: the options leave them untouched
    sa, sb = a.state_dict(), b.state_dict()
    for k, v in sa.items():
        if k.startswith(("teacher.", "student.", "global_head.net")):
            assert torch.equal(v, sb[k]), k
    assert set(sb) - set(sa) and not set(sa) - set(sb)  # only additions


@pytest.mark.parametrize("size", [48, 112, 40])
def test_flatten_global_head_keeps_the_map(size: int) -> None:
    h = GlobalHead(7, 32, pool="flatten", size=size)
    side = -(-size // 16)
    assert h.proj.in_features == 64 * side * side
    assert h(torch.randn(2, 7, size, size)).shape == (2, 32)
    x = torch.zeros(1, 7, size, size)
    y = x.clone()
    y[..., : size // 2] = 1.0  # same mean-pooled content in another place is told apart
    z = x.clone()
    z[..., size // 2 :] = 1.0
    h.eval()
    assert not torch.allclose(h(y), h(z))
    with pytest.raises(ValueError):
        GlobalHead(7, 32, pool="max", size=size)


def test_global_strides_keep_a_finer_map() -> None:
    h = GlobalHead(7, 32, pool="flatten", size=48, strides=3, dropout=0.5)
    assert h.proj.in_features == 64 * 6 * 6  # 48 / 2**3
    assert h(torch.randn(2, 7, 48, 48)).shape == (2, 32)
    h.eval()  # dropout off at inference: deterministic
    x = torch.randn(1, 7, 48, 48)
    assert torch.equal(h(x), h(x))


def test_motion_alone_keeps_appearance_out() -> None:
    torch.manual_seed(0)
    model = create_model(cfg(**LOC, appearance=False)).eval()
    assert model.global_head.net[0][0].in_channels == 4  # u, v, magnitude, strain; no change image
    apex = torch.rand(2, 3, S, S)
    motion = torch.randn(2, 3, S, S) * 0.5
    out = model(None, apex, motion=motion)
    # another face with the same motion: the global branch cannot tell them apart
    other = model(None, torch.rand(2, 3, S, S), motion=motion)
    assert torch.allclose(out["logits_global"], other["logits_global"])
    assert torch.allclose(out["logits_scale1"], other["logits_scale1"])
    assert not torch.allclose(out["logits_scale2"], other["logits_scale2"])  # the student's features still see the face
    with pytest.raises(ValueError, match="appearance"):
        create_model(cfg(input_form="onset_apex", appearance=False))


def test_concat_fusion_reads_each_branch() -> None:
    torch.manual_seed(0)
    model = create_model(cfg(**LOC, fusion="concat", global_strides=3)).eval()
    assert model.fuse[1].in_features == 4 * 32  # global + three scales, side by side
    onset, apex = torch.rand(2, 3, S, S), torch.rand(2, 3, S, S)
    base = model(onset, apex)["logits"]
    # zeroing one scale's projection changes the fused logits: that branch is read on its own
    with torch.no_grad():
        model.scale_proj["3"].weight.zero_()
        model.scale_proj["3"].bias.zero_()
    assert not torch.allclose(model(onset, apex)["logits"], base)
    with pytest.raises(ValueError):
        ModelConfig(fusion="max")


@pytest.mark.parametrize("extra", [{}, {"fusion": "concat", "global_strides": 3, "global_dropout": 0.5},
                                   {"fusion": "concat", "global_strides": 3, "appearance": False}])
def test_location_forms_train_export_and_match_torch(tmp_path, extra: dict) -> None:
    torch.manual_seed(0)
    c = cfg(**LOC, **extra)
    model = create_model(c)
    onset, apex = torch.rand(4, 3, S, S), torch.rand(4, 3, S, S)
    out = model(onset, apex, with_teacher=True)
    assert out["logits_global"].shape == (4, 3)
    y = torch.tensor([0, 1, 2, 0])
    parts = total_loss(out, onset, y, LossConfig(), class_alpha(y.tolist(), 3), c.theta, model.scales, True)
    assert "head_g" in parts
    parts["all"].backward()
    assert model.global_logits.weight.grad.abs().sum() > 0
    assert model.scale_proj["1"].weight.grad.abs().sum() > 0
    probs, heat = assert_onnx_matches_torch(model, c, S, tmp_path)
    assert probs.shape == (2, 3) and heat.shape == (2, 4, 6, 6)


def test_no_global_loss_without_the_head() -> None:
    model = create_model(cfg())
    out = model(torch.rand(2, 3, S, S), torch.rand(2, 3, S, S), with_teacher=True)
    assert "logits_global" not in out
    y = torch.tensor([0, 1])
    assert "head_g" not in total_loss(out, torch.rand(2, 3, S, S), y, LossConfig(), None, 0.02, model.scales, True)


@pytest.mark.parametrize("form", ["motion", "apex", "onset_apex"])
@pytest.mark.parametrize("row, changes", ABLATION_ROWS)
@pytest.mark.parametrize("fusion", ["mean", "concat"])
def test_table3_rows_run_with_location_heads(form: str, row: str, changes: dict, fusion: str) -> None:
    model = export_module(create_model(cfg(input_form=form, **LOC, fusion=fusion, **changes)))
    with torch.no_grad():
        probs, heat = model(torch.randn(2, 3, S, S) * 0.5, torch.rand(2, 3, S, S))
    assert probs.shape == (2, 3) and heat.shape == (2, 4, 6, 6), row
