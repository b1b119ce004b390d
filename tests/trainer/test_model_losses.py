"""Loss terms of Eqs. 1-4 and 9-11, and gradient flow to every part of the network."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.config.train import LossConfig, ModelConfig
from trainer.losses import (
    class_alpha,
    focal_loss,
    mask_loss,
    pretrain_loss,
    remove_loss,
    total_loss,
)
from trainer.models import create_model

torch.set_num_threads(1)


def test_class_alpha_is_inverse_frequency() -> None:
    a = class_alpha([0, 0, 0, 1], 3)
    # N / (C_present * n_t): 4 / (2 * 3) and 4 / (2 * 1); the absent class gets 1
    assert torch.allclose(a, torch.tensor([4 / 6, 2.0, 1.0]))


def test_focal_loss_values() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 2])
    p = torch.softmax(logits, 1)
    pt = torch.stack([p[0, 0], p[1, 2]])
    # gamma 0, no alpha = cross-entropy
    ce = torch.nn.functional.cross_entropy(logits, y)
    assert torch.allclose(focal_loss(logits, y, None, 0.0), ce)
    want = (-(1 - pt) ** 2 * pt.log() * torch.tensor([0.5, 3.0])).mean()
    assert torch.allclose(focal_loss(logits, y, torch.tensor([0.5, 1.0, 3.0]), 2.0), want)
    # focusing: a confident right answer costs far less than with plain CE
    assert focal_loss(logits[:1], y[:1], None, 2.0) < 0.1 * focal_loss(logits[:1], y[:1], None, 0.0)


def test_mask_loss_counts_only_patches_at_or_above_theta() -> None:
    fc = torch.tensor([[0.01, 0.05, 0.30, 0.02], [0.0, 0.0, 0.0, 0.5]])
    assert math.isclose(float(mask_loss(fc, 0.02)), ((0.05 + 0.30 + 0.02) + 0.5) / 2, rel_tol=1e-6)
    assert float(mask_loss(fc, 0.9)) == 0.0


def test_reconstruction_losses() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert float(pretrain_loss({"teacher_recon": x}, x)) == 0.0
    out = {"teacher_recon": x, "student_recon": x + 0.1, "teacher_feat": torch.zeros(2, 4), "student_feat": torch.ones(2, 4)}
    parts = remove_loss(out, x, distill_weight=0.5)
    assert math.isclose(float(parts["teacher"]), 0.0, abs_tol=1e-9)
    assert math.isclose(float(parts["student"]), 0.01, rel_tol=1e-4)
    assert math.isclose(float(parts["distill"]), 0.01 + 1.0, rel_tol=1e-4)
    assert math.isclose(float(parts["remove"]), 0.01 + 0.5 * 1.01, rel_tol=1e-4)


def _joint(form: str, **kw):
    torch.manual_seed(0)
    mc = ModelConfig(crop_size=64, grid=8, embed_dim=32, heads=2, depth=2, input_form=form, theta=0.0, **kw)
    model = create_model(mc).train()
    onset = torch.rand(4, 3, 64, 64)
    apex = (onset + 0.1 * torch.rand_like(onset)).clamp(0, 1)
    y = torch.tensor([0, 1, 2, 1])
    out = model(onset, apex, with_teacher=True)
    parts = total_loss(out, onset, y, LossConfig(), class_alpha(y.tolist(), 3), mc.theta, model.scales, mc.identity_removal)
    return model, parts


@pytest.mark.parametrize("form", ["apex", "onset_apex"])
def test_every_part_gets_gradient_from_l_all(form: str) -> None:
    model, parts = _joint(form)
    assert set(parts) == {"global", "teacher", "student", "distill", "remove", "scale1", "scale2", "scale3", "mask", "all"}
    parts["all"].backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert dead == []


def test_terms_follow_the_switches() -> None:
    _, parts = _joint("apex", identity_removal=False, scales=[2])
    assert set(parts) == {"global", "scale2", "mask", "all"}
    _, parts = _joint("apex", scales=[])
    assert "mask" not in parts and "remove" in parts


def test_mask_loss_pushes_attention_down() -> None:
    """One gradient step on L_mask alone lowers the attention mass kept above theta."""
    torch.manual_seed(0)
    mc = ModelConfig(crop_size=64, grid=8, embed_dim=32, heads=2, depth=1, input_form="apex", scales=[1], theta=0.0)
    model = create_model(mc).train()
    x = torch.rand(4, 3, 64, 64)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = float(mask_loss(model(x, x)["fc_scale1"], mc.theta).detach())
    for _ in range(5):
        opt.zero_grad()
        mask_loss(model(x, x)["fc_scale1"], mc.theta).backward()
        opt.step()
    assert float(mask_loss(model(x, x)["fc_scale1"], mc.theta).detach()) < before
