"""LOSO with a tested margin: the paired bootstrap over subjects and the Wilcoxon test on
known cases, shards that split the folds between processes and a final run that reloads them,
the apex-only form beside the configured one, and MFVAN's motion form through the real folds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trainer.config.train import EvalConfig, ModelConfig, StageConfig, TrainConfig
from trainer.evaluate.loso import main, run_loso, save_pairs
from trainer.evaluate.protocol import FoldResult, paired_difference
from trainer.train.toy import toy_pairs

torch.set_num_threads(1)
S = 32


def folds(correct: list[float], n: int = 12, seed: int = 0) -> list[FoldResult]:
    """One fold per subject; `correct[k]` of subject k's n predictions are right."""
    rng = np.random.default_rng(seed)
    out = []
    for k, c in enumerate(correct):
        y = np.arange(n) % 3
        p = y.copy()
        wrong = rng.choice(n, size=round((1 - c) * n), replace=False)
        p[wrong] = (y[wrong] + 1) % 3
        out.append(FoldResult(f"sub{k:02d}", y, p, 1.0))
    return out


def test_bootstrap_interval_and_wilcoxon_on_known_cases() -> None:
    good, poor = folds([1.0] * 10), folds([0.5] * 10, seed=1)
    d = paired_difference(good, poor, 3, n_boot=300)
    assert d["delta_uf1"] > 0.4 and d["ci95"][0] > 0.3 and d["wilcoxon_p"] < 0.01 and d["folds_a_better"] == 10
    same = paired_difference(good, good, 3, n_boot=100)
    assert same["delta_uf1"] == 0 and same["ci95"] == [0.0, 0.0] and same["wilcoxon_p"] == 1.0 and same["folds_tied"] == 10
    mixed = paired_difference(folds([1.0, 0.5] * 5), folds([0.5, 1.0] * 5, seed=2), 3, n_boot=300)
    assert mixed["ci95"][0] < 0 < mixed["ci95"][1]  # no margin either way
    bad = folds([1.0] * 10)
    bad[0] = FoldResult("sub00", np.zeros(12, np.int64), np.zeros(12, np.int64), 1.0)
    with pytest.raises(ValueError, match="different samples"):
        paired_difference(good, bad, 3)


def test_shards_then_full_report_with_significance(tmp_path) -> None:
    d = toy_pairs(4, 2, 0, 2, size=S)
    st = StageConfig(epochs=0)  # identity removal on, its stages skipped: the folds are what is tested
    # appearance: false (the fusion recipe's motion-only heads) must not leak into the apex-only form, which sees only the apex
    cfg = TrainConfig(device="cpu", model=ModelConfig(crop_size=S, grid=4, embed_dim=16, heads=2, depth=1, input_form="motion",
                                                      appearance=False),
                      pretrain=st, remove=st, joint=StageConfig(epochs=1, lr=2e-3, batch_size=8), eval=EvalConfig(overlays=0))
    models = ["mfvan", "mfvan_apex"]
    a = run_loso(cfg, d, tmp_path, models, progress=False, shard=(0, 2))
    b = run_loso(cfg, d, tmp_path, models, progress=False, shard=(1, 2))
    assert a["protocol"]["folds_run"] == b["protocol"]["folds_run"] == 2
    saved = sorted(p.name for p in (tmp_path / "folds" / "mfvan").glob("*.npz"))
    assert len(saved) == 4
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "folds").rglob("*.npz")}
    full = run_loso(cfg, d, tmp_path, models, progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())  # reloaded, not retrained
    assert full["models"]["mfvan"]["input_form"] == "motion" and full["models"]["mfvan_apex"]["input_form"] == "apex"
    sig = full["significance"]
    assert sig["a"] == "mfvan" and sig["b"] == "mfvan_apex" and sig["subjects"] == 4
    assert sig["ci95"][0] <= sig["delta_uf1"] <= sig["ci95"][1]
    assert "paired-bootstrap interval" in (tmp_path / "results.md").read_text()
    # --saved-only reports what ran and trains nothing: lbptop has no saved fold
    partial = run_loso(cfg, d, tmp_path, [*models, "lbptop"], progress=False, saved_only=True)
    assert partial["not_run"] == ["lbptop"] and partial["models"]["mfvan"]["n"] == len(d)
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items()) and not (tmp_path / "folds" / "lbptop").exists()


def test_folds_of_another_config_are_never_deleted(tmp_path) -> None:
    """A saved fold is CPU-hours: a saved-only report leaves mismatched folds in place, a training
    run moves them aside; a new option left at its default keeps the old folds valid."""
    from trainer.evaluate.protocol import fingerprint

    d = toy_pairs(2, 2, 0, 2, size=S)
    st = StageConfig(epochs=0)
    model = ModelConfig(crop_size=S, grid=4, embed_dim=16, heads=2, depth=1, input_form="motion")
    cfg = TrainConfig(device="cpu", model=model, pretrain=st, remove=st, joint=StageConfig(epochs=1, batch_size=8),
                      eval=EvalConfig(overlays=0))
    run_loso(cfg, d, tmp_path, ["mfvan"], progress=False)
    saved = sorted((tmp_path / "folds" / "mfvan").glob("*.npz"))
    blobs = {p.name: p.read_bytes() for p in saved}
    other = cfg.model_copy(update={"joint": StageConfig(epochs=2, batch_size=8)})
    rep = run_loso(other, d, tmp_path, ["mfvan"], progress=False, saved_only=True)
    assert "mfvan" in rep["not_run"]  # nothing of the other config is reported ...
    assert {p.name: p.read_bytes() for p in saved} == blobs  # ... and nothing is touched
    run_loso(other, d, tmp_path, ["mfvan"], progress=False)
    stale = sorted((tmp_path / "folds" / "mfvan" / "stale").glob("*.npz"))
    assert len(stale) == len(saved) and {p.read_bytes() for p in stale} == set(blobs.values())
    # an option at its default value (as every new option starts) does not change the fingerprint
    explicit = TrainConfig.model_validate({**cfg.model_dump(), "data": {**cfg.data.model_dump(), "pose_jitter": [0, 0, 0]}})
    assert fingerprint(explicit, "mfvan") == fingerprint(cfg, "mfvan") != fingerprint(other, "mfvan")


def test_bad_shard_is_one_line(tmp_path, capsys) -> None:
    d = toy_pairs(2, 2, 0, 2, size=S)
    save_pairs(tmp_path / "p.npz", d)
    assert main(["--pairs", str(tmp_path / "p.npz"), "--shard", "2/2", "--out", str(tmp_path / "o")]) == 2
    assert "--shard" in capsys.readouterr().err


def test_cross_generator_holds_out_the_same_subjects(tmp_path, capsys) -> None:
    data = toy_pairs(4, 2, 0, 2, size=S)
    other = toy_pairs(4, 2, 5, 2, size=S)
    held = other.subject_list()[-1]
    save_pairs(tmp_path / "a.npz", data)
    save_pairs(tmp_path / "b.npz", other.select_subjects({held}))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("device: cpu\nmodel: {crop_size: 32, grid: 4, embed_dim: 16, heads: 2, depth: 1, input_form: motion}\n"
                   "pretrain: {epochs: 0}\nremove: {epochs: 0}\njoint: {epochs: 1, batch_size: 8}\n")
    args = ["--config", str(cfg), "--pairs", str(tmp_path / "a.npz"), "--out", str(tmp_path / "o"), "--no-progress"]
    assert main([*args, "--cross", str(tmp_path / "b.npz"), "--models", "mfvan,offapex"]) == 0
    res = json.loads((tmp_path / "o" / "cross_generator.json").read_text())
    assert held not in res["train_subjects"] and res["test_subjects"] == [held]
    assert set(res["models"]) == {"mfvan", "offapex"} and res["same_samples"] == res["other_samples"] == 6
    m = res["models"]["mfvan"]
    assert m["drop_uf1"] == pytest.approx(m["same_generator"]["uf1"] - m["other_generator"]["uf1"])
    assert "Cross-generator check" in capsys.readouterr().out
    save_pairs(tmp_path / "c.npz", toy_pairs(6, 2, 0, 2, size=S).select_subjects({"sub05"}))
    assert main([*args, "--cross", str(tmp_path / "c.npz")]) == 2  # no same-generator side for sub05
