"""MFVAN network: shapes, the inference contract, masking by theta, switches, ONNX parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from trainer.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from trainer.config.train import ModelConfig
from trainer.export import export_onnx
from trainer.models import HEATMAP_CHANNELS, create_model, export_module, list_models

torch.set_num_threads(1)
S = 64  # small crops keep the tests fast; 64 = 8 x grid 8


def cfg(**kw) -> ModelConfig:
    base = {"crop_size": S, "grid": 8, "embed_dim": 32, "heads": 2, "depth": 1}
    base.update(kw)
    return ModelConfig(**base)


def pair(b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    onset = torch.rand(b, 3, S, S, generator=g)
    return onset, (onset + 0.05 * torch.rand(b, 3, S, S, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("form", ["apex", "onset_apex"])
def test_contract_shapes_and_ranges(form: str) -> None:
    torch.manual_seed(0)
    m = export_module(create_model(cfg(input_form=form)))
    with torch.no_grad():
        probs, heat = m(*pair(3))
    assert probs.shape == (3, 3) and heat.shape == (3, 4, 8, 8)
    assert torch.allclose(probs.sum(1), torch.ones(3), atol=1e-5)
    assert heat.min() >= 0 and heat.max() <= 1.0 + 1e-6
    assert len(HEATMAP_CHANNELS) == 4 and HEATMAP_CHANNELS[0] == "fused"
    # every enabled scale's map peaks at exactly 1 (normalised by its max)
    assert torch.allclose(heat.flatten(2).amax(2), torch.ones(3, 4), atol=1e-4)


def test_disabled_scale_gives_zero_map_and_global_only_classifies() -> None:
    m = export_module(create_model(cfg(scales=[1, 3])))
    with torch.no_grad():
        _, heat = m(*pair())
    assert heat[:, 2].abs().max() == 0 and heat[:, 1].max() > 0 and heat[:, 3].max() > 0
    g = export_module(create_model(cfg(scales=[], identity_removal=False)))
    with torch.no_grad():
        probs, heat = g(*pair())
    assert probs.shape == (2, 3) and heat.abs().max() == 0


def test_onset_matters_only_in_onset_apex_form() -> None:
    onset, apex = pair()
    for form, should_change in (("apex", False), ("onset_apex", True)):
        torch.manual_seed(1)
        m = export_module(create_model(cfg(input_form=form)))
        with torch.no_grad():
            p1, _ = m(onset, apex)
            p2, _ = m(torch.rand_like(onset), apex)
        assert (not torch.allclose(p1, p2, atol=1e-6)) == should_change, form


def test_theta_masks_low_attention_patches() -> None:
    """theta = 0 keeps every patch; a theta above every f_c keeps only the class token."""
    torch.manual_seed(2)
    onset, apex = pair()
    m = create_model(cfg(input_form="apex", scales=[1], use_global=False, theta=0.0)).eval()
    with torch.no_grad():
        out = m(onset, apex)
        tf = m.transformers["1"]
        tokens, fc = tf(m.norm(apex))
    assert torch.allclose(out["fc_scale1"], fc)
    assert fc.shape == (2, 64) and (fc > 0).all() and (fc.sum(1) < 1).all()
    all_mean = tokens.mean(dim=1)  # cls + all patches
    assert torch.allclose(m.scale_heads["1"](all_mean), out["logits_scale1"], atol=1e-5)
    hi = create_model(cfg(input_form="apex", scales=[1], use_global=False, theta=0.99)).eval()
    hi.load_state_dict(m.state_dict())
    with torch.no_grad():
        out_hi = hi(onset, apex)
    assert torch.allclose(hi.scale_heads["1"](tokens[:, 0]), out_hi["logits_scale1"], atol=1e-5)
    # an intermediate theta keeps exactly the patches at or above it
    theta = float(fc[0].median())
    mid = create_model(cfg(input_form="apex", scales=[1], use_global=False, theta=theta)).eval()
    mid.load_state_dict(m.state_dict())
    keep = fc[0] >= theta
    want = (tokens[0, 0] + tokens[0, 1:][keep].sum(0)) / (1 + keep.sum())
    with torch.no_grad():
        got = mid(onset, apex)["logits_scale1"][0]
    assert 0 < keep.sum() < 64
    assert torch.allclose(mid.scale_heads["1"](want), got, atol=1e-5)


def test_registry_and_bad_configs() -> None:
    assert {"mfvan_tiny", "mfvan_base"} <= set(list_models())
    with pytest.raises(ValueError, match="unknown model"):
        create_model(cfg(name="nope"))
    with pytest.raises(ValueError, match="cannot be split"):
        create_model(cfg(grid=7))
    with pytest.raises(ValueError, match="not scales"):
        create_model(cfg(scales=[4]))
    with pytest.raises(ValueError, match="nothing classifies"):
        create_model(cfg(scales=[], use_global=False))


@pytest.mark.parametrize("form", ["apex", "onset_apex"])
def test_onnx_export_matches_torch(form: str, tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = create_model(cfg(input_form=form)).eval()
    path = export_onnx(model, tmp_path / "m.onnx", S)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["onset", "apex"]
    assert [o.name for o in sess.get_outputs()] == ["probs", "heatmaps"]
    for b in (1, 3):  # dynamic batch axis
        onset, apex = pair(b, seed=b)
        probs, heat = sess.run(None, {"onset": onset.numpy(), "apex": apex.numpy()})
        with torch.no_grad():
            tp, th = export_module(model)(onset, apex)
        np.testing.assert_allclose(probs, tp.numpy(), atol=1e-5)
        np.testing.assert_allclose(heat, th.numpy(), atol=1e-4)


def test_checkpoint_roundtrip_atomic_and_errors(tmp_path: Path) -> None:
    torch.manual_seed(4)
    c = cfg(input_form="apex", scales=[2, 3])
    model = create_model(c).eval()
    path = save_checkpoint(tmp_path / "m.ckpt", model, c, ["negative", "positive", "surprise"], stage="joint", epoch=7)
    assert [p.name for p in tmp_path.iterdir()] == ["m.ckpt"]  # no temp file left behind
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == "mfvan-ckpt/1" and blob["stage"] == "joint" and blob["epoch"] == 7
    assert set(blob) >= {"model_config", "labels", "state_dict", "train_config", "git_rev", "input_spec"}
    loaded, labels, lc = load_model(path)
    assert lc == c and labels == ["negative", "positive", "surprise"]
    x = pair()
    with torch.no_grad():
        for a, b in zip(export_module(model)(*x), export_module(loaded)(*x), strict=True):
            assert torch.equal(a, b)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match="labels"):
        save_checkpoint(tmp_path / "x.ckpt", model, c, ["a", "b"])
