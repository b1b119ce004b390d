"""`mfvan-eval select`: a variant trained without the validation subjects, scored on them as
captured and posed; overrides validated; bad input is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.subcommands import eval_main
from trainer.evaluate.loso import save_pairs
from trainer.train.toy import toy_pairs

CFG = ("device: cpu\nmodel: {crop_size: 32, grid: 4, embed_dim: 16, heads: 2, depth: 1, input_form: motion}\n"
       "pretrain: {epochs: 1, batch_size: 8}\nremove: {epochs: 1, batch_size: 8}\njoint: {epochs: 1, batch_size: 8}\n")


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    save_pairs(tmp_path / "p.npz", toy_pairs(n_subjects=3, per_class=2))
    (tmp_path / "c.yaml").write_text(CFG)
    return tmp_path / "c.yaml", tmp_path / "p.npz"


def test_scores_a_variant_and_the_baseline_on_the_validation_subjects(files: tuple[Path, Path], tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg, pairs = files
    argv = ["select", "--config", str(cfg), "--pairs", str(pairs), "--val-subjects", "1", "--log", str(tmp_path / "s.jsonl")]
    assert eval_main([*argv, "--set", "joint.epochs=2", "--set", "model.fusion=concat"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["variant"] == {"joint.epochs": 2, "model.fusion": "concat"} and res["val_subjects"] == ["sub00"]
    for head in ("fused", "scale1", "scale3", "posed_fused", "posed_scale1"):
        assert 0 <= res[f"{head}_uf1"] <= 1 and res[f"{head}_nll"] > 0, head
    assert eval_main([*argv, "--baseline", "offapex"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert base["model"] == "offapex" and 0 <= base["posed_fused_uf1"] <= 1
    assert [json.loads(x)["model"] for x in (tmp_path / "s.jsonl").read_text().splitlines()] == ["mfvan", "offapex"]


@pytest.mark.parametrize(("extra", "said"), [
    (["--set", "joint.epoch=2"], "naming a config field"),
    (["--set", "joint.epochs=-1"], "joint.epochs"),
    (["--val-subjects", "9"], "not all"),
    (["--pose", "20,0.1"], "degrees,scale,pixels"),
])
def test_bad_input_is_one_line_and_exit_2(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                          extra: list[str], said: str) -> None:
    cfg, pairs = files
    assert eval_main(["select", "--config", str(cfg), "--pairs", str(pairs), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and "\n" not in err and "Traceback" not in err
