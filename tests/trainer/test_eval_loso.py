"""LOSO evaluation: folds never train on the test subject, metrics, report files, baselines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.baselines import lbptop, offapex
from trainer.config.train import EvalConfig, ModelConfig, StageConfig, TrainConfig
from trainer.evaluate import protocol
from trainer.evaluate.loso import load_pairs_npz, main, run_loso, save_pairs
from trainer.evaluate.metrics import scores
from trainer.train import PairSet
from trainer.train.toy import toy_pairs

torch.set_num_threads(1)
S = 32


def toy(n_subjects: int = 3, per_class: int = 3, seed: int = 0, frames: int = 2) -> PairSet:
    return toy_pairs(n_subjects, per_class, seed, frames, size=S)


def tiny_cfg(epochs: int = 3, protocol_: str = "fixed_epochs") -> TrainConfig:
    st = StageConfig(epochs=1, lr=2e-3, batch_size=8)
    return TrainConfig(
        device="cpu",
        model=ModelConfig(crop_size=S, grid=4, embed_dim=16, heads=2, depth=1),
        pretrain=st, remove=st, joint=StageConfig(epochs=epochs, lr=2e-3, batch_size=8),
        eval=EvalConfig(protocol=protocol_, nested_val_subjects=1, overlays=3),
    )


def test_scores_match_definitions() -> None:
    y = np.array([0, 0, 1, 1, 2])
    p = np.array([0, 1, 1, 1, 0])
    s = scores(y, p, 3)
    assert s["accuracy"] == pytest.approx(3 / 5)
    # recalls 1/2, 1, 0 -> UAR 0.5; F1s 0.5, 0.8, 0 -> UF1 0.4333
    assert s["uar"] == pytest.approx(0.5) and s["uf1"] == pytest.approx((0.5 + 0.8 + 0) / 3)


def test_pairset_take_keeps_frames_with_their_pairs() -> None:
    d = toy()
    sub = d.select_subjects({"sub01"})
    assert set(sub.subjects) == {"sub01"} and len(sub) == 9
    assert len(sub.frames) == 18 and sorted(set(sub.frame_owner.tolist())) == list(range(9))
    np.testing.assert_array_equal(sub.sequence(4)[1:-1], d.sequence(int(np.flatnonzero(d.subjects == "sub01")[4]))[1:-1])


def test_folds_never_train_on_the_test_subject(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[set[str], str]] = []
    real_train = protocol.train

    def spy(cfg, data, **kw):  # records what each fold trains on, then really trains
        seen.append((set(data.subjects.tolist()), kw.get("joint_epochs")))
        return real_train(cfg, data, **kw)

    monkeypatch.setattr(protocol, "train", spy)
    d = toy()
    for s in d.subject_list():
        r = protocol.run_mfvan_fold(tiny_cfg(epochs=1), d, s, torch.device("cpu"), False)
        assert set(d.subjects[r.index]) == {s} and s not in seen[-1][0]
    assert len(seen) == 3


def test_nested_protocol_picks_epochs_inside_training_subjects(monkeypatch: pytest.MonkeyPatch) -> None:
    trained_on: list[set[str]] = []
    real_train = protocol.train

    def spy(cfg, data, **kw):
        trained_on.append(set(data.subjects.tolist()))
        return real_train(cfg, data, **kw)

    monkeypatch.setattr(protocol, "train", spy)
    d = toy()
    r = protocol.run_mfvan_fold(tiny_cfg(epochs=2, protocol_="nested"), d, "sub00", torch.device("cpu"), False)
    assert 1 <= r.epochs <= 2
    assert all("sub00" not in t for t in trained_on) and len(trained_on[0]) == 1  # inner train = 1 subject


def test_baselines_learn_a_clear_signal() -> None:
    d = toy(n_subjects=3, per_class=5, frames=3)
    tr, te = d.select_subjects({"sub00", "sub01"}), d.select_subjects({"sub02"})
    assert lbptop.features(te).shape == (15, 3 * 16 * 10)
    for fit in (lbptop.fit, lambda t, seed: offapex.fit(t, seed=seed, epochs=30)):
        acc = float((fit(tr, seed=0)(te) == te.labels).mean())
        assert acc >= 0.6, acc


def test_run_loso_writes_the_report_and_resumes(tmp_path: Path) -> None:
    d = toy()
    rep = run_loso(tiny_cfg(), d, tmp_path, models=["mfvan", "lbptop"], progress=False, ablation=True, ablation_folds=1)
    assert set(rep["models"]) == {"mfvan", "lbptop"}
    for name in ("report.json", "results.md", "ablation.md", "confusion_mfvan.png", "confusion_lbptop.png", "attention_overlays.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "report.json").read_text())
    m = saved["models"]["mfvan"]
    assert m["n"] == len(d) and len(m["folds"]) == 3 and all(f["seconds"] > 0 for f in m["folds"])
    assert m["profile"]["gflops_per_pair"] > 0 and sum(r["support"] for r in m["per_class"]) == len(d)
    assert [r["row"] for r in saved["ablation"]["rows"]][0] == "Global" and len(saved["ablation"]["rows"]) == 8
    # a rerun reloads every fold instead of training again
    before = (tmp_path / "folds" / "mfvan" / "sub00.npz").stat().st_mtime_ns
    rep2 = run_loso(tiny_cfg(), d, tmp_path, models=["mfvan"], progress=False)
    assert (tmp_path / "folds" / "mfvan" / "sub00.npz").stat().st_mtime_ns == before
    assert rep2["models"]["mfvan"]["accuracy"] == rep["models"]["mfvan"]["accuracy"]


def test_cli_on_saved_pairs_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = toy(n_subjects=2, per_class=2)
    save_pairs(tmp_path / "p.npz", d)
    assert load_pairs_npz(tmp_path / "p.npz").clips == d.clips
    cfg = tmp_path / "c.yaml"
    cfg.write_text("device: cpu\nmodel: {crop_size: 32, grid: 4, embed_dim: 16, heads: 2, depth: 1}\n"
                   "pretrain: {epochs: 0}\nremove: {epochs: 0}\njoint: {epochs: 1, batch_size: 8}\n")
    assert main(["--config", str(cfg), "--pairs", str(tmp_path / "p.npz"), "--out", str(tmp_path / "o"), "--models", "lbptop", "--no-progress"]) == 0
    assert json.loads((tmp_path / "o" / "report.json").read_text())["models"]["lbptop"]["n"] == len(d)
    assert main(["--config", str(cfg), "--out", str(tmp_path / "o2"), "--no-progress"]) == 2
    assert "no dataset root" in capsys.readouterr().err
    assert main(["--config", str(cfg), "--pairs", str(tmp_path / "p.npz"), "--models", "svm"]) == 2


def test_saved_folds_are_reused_only_for_the_same_config(tmp_path: Path) -> None:
    calls: list[str] = []

    def one_fold(subject: str) -> protocol.FoldResult:
        calls.append(subject)
        return protocol.FoldResult(subject, np.array([0, 1]), np.array([0, 0]), 1.0, index=np.array([0, 1]))

    for fp, want in (("cfg-a", ["s1", "s2"]), ("cfg-a", []), ("cfg-b", ["s1", "s2"])):
        calls.clear()
        res = protocol.run_folds("m", ["s1", "s2"], one_fold, tmp_path, False, lambda _m: None, fp)
        assert calls == want and [r.subject for r in res] == ["s1", "s2"]
        assert res[0].y_pred.tolist() == [0, 0]
