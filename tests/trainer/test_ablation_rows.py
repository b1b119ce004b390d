"""Table 3 rows whose identity removal reaches no logit are the rows without it: the predicate,
a real training run of both (bitwise the same predictions), and the LOSO ablation training
such a network once and saying so in its report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.config.train import EvalConfig, ModelConfig, StageConfig, TrainConfig
from trainer.evaluate.loso import run_loso
from trainer.evaluate.protocol import ABLATION_ROWS
from trainer.models import identity_removal_reaches_logits
from trainer.train import predict, train
from trainer.train.toy import toy_pairs

torch.set_num_threads(1)
S = 48


def model_cfg(**kw) -> ModelConfig:
    return ModelConfig(**{"name": "mfvan_lite", "input_form": "motion", "appearance": False, "crop_size": S, "grid": 6,
                          "embed_dim": 16, "heads": 2, "depth": 1, **kw})


def train_cfg(**kw) -> TrainConfig:
    st = StageConfig(epochs=1, lr=2e-3, batch_size=8)
    return TrainConfig(device="cpu", model=model_cfg(**kw), pretrain=st, remove=st, joint=StageConfig(epochs=2, lr=2e-3, batch_size=8),
                       eval=EvalConfig(overlays=0))


@pytest.mark.parametrize("row, changes", ABLATION_ROWS)
def test_only_scales_2_3_or_appearance_let_identity_removal_reach_the_logits(row, changes) -> None:
    reaches = changes["identity_removal"] and bool({2, 3} & set(changes["scales"]))
    assert identity_removal_reaches_logits(model_cfg(**changes)) == reaches, row
    # with appearance, or in the image forms, the change image apex - x'' feeds the global head
    assert identity_removal_reaches_logits(model_cfg(appearance=True, **changes)) == changes["identity_removal"], row
    for form in ("apex", "onset_apex"):
        assert identity_removal_reaches_logits(model_cfg(input_form=form, appearance=True, **changes)) == changes["identity_removal"]


def test_inert_identity_removal_trains_the_very_same_network() -> None:
    data = toy_pairs(3, 2, 0, 2, size=S)

    def probs(**kw) -> np.ndarray:
        p, _ = predict(train(train_cfg(**kw), data, progress=False), data)
        return p

    assert np.array_equal(probs(scales=[1], identity_removal=True), probs(scales=[1], identity_removal=False))
    # where the student's features are a scale's tokens, identity removal changes the network
    assert not np.array_equal(probs(scales=[1, 2], identity_removal=True), probs(scales=[1, 2], identity_removal=False))


def test_ablation_trains_a_shared_network_once_and_says_so(tmp_path: Path) -> None:
    data = toy_pairs(2, 2, 0, 2, size=S)
    rep = run_loso(train_cfg(), data, tmp_path, models=[], progress=False, ablation=True, ablation_folds=1)
    rows = {r["row"]: r for r in rep["ablation"]["rows"]}
    assert len(rows) == len(ABLATION_ROWS)
    assert rows["Global+RI"]["same_network_as"] == "Global" and rows["Global+scale1+RI"]["same_network_as"] == "Global+scale1"
    assert "same_network_as" not in rows["Global+scale1,2+RI"] and "same_network_as" not in rows["Global"]
    assert rows["Global+RI"]["uf1"] == rows["Global"]["uf1"]
    folders = {p.name for p in (tmp_path / "folds").iterdir()}
    assert "ablation_Global" in folders and "ablation_Global+RI" not in folders and "ablation_Global+scale1+RI" not in folders
    # the configured model (all scales, identity removal) is the last row: its folds are mfvan's
    assert "mfvan" in folders and "ablation_Global+scale1,2,3+RI" not in folders
    assert "Global+RI: identity removal reaches no logit" in (tmp_path / "ablation.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["ablation"]["rows"][1]["same_network_as"] == "Global"


def test_ablation_rows_carry_their_margin_to_the_best_baseline(tmp_path: Path) -> None:
    data = toy_pairs(3, 2, 0, 2, size=S)
    cfg = train_cfg().model_copy(update={"joint": StageConfig(epochs=1, lr=2e-3, batch_size=8)})
    rep = run_loso(cfg, data, tmp_path, models=["lbptop"], progress=False, ablation=True, ablation_folds=2)
    assert rep["ablation"]["baseline"] == "lbptop" and rep["ablation"]["folds"] == 2
    for r in rep["ablation"]["rows"]:
        g = r["vs_baseline"]
        assert g["subjects"] == 2 and g["ci95"][0] <= g["delta_uf1"] <= g["ci95"][1], r["row"]
    assert "vs_baseline" in (tmp_path / "ablation.md").read_text()
    # a report-only rerun over more folds trains nothing: each row says how many folds it has
    again = run_loso(cfg, data, tmp_path, models=["lbptop"], progress=False, ablation=True, ablation_folds=3, saved_only=True)
    assert {r["folds_run"] for r in again["ablation"]["rows"]} == {2}
    assert not (tmp_path / "folds" / "ablation_Global" / "sub02.npz").exists()
