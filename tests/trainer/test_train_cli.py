"""`mfvan-train`: runs the stages from a crops file, exports a loadable checkpoint, resumes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.checkpoint import load_checkpoint, load_model
from trainer.evaluate.loso import save_pairs
from trainer.train.toy import toy_pairs
from trainer.train_cli import main

CFG = ("device: cpu\nmodel: {crop_size: 32, grid: 4, embed_dim: 16, heads: 2, depth: 1}\n"
       "pretrain: {epochs: 1, batch_size: 8}\nremove: {epochs: 1, batch_size: 8}\njoint: {epochs: 2, batch_size: 8}\n")


def test_train_export_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_pairs(tmp_path / "p.npz", toy_pairs(n_subjects=2, per_class=2))
    (tmp_path / "c.yaml").write_text(CFG)
    argv = ["--config", str(tmp_path / "c.yaml"), "--pairs", str(tmp_path / "p.npz"), "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1"]
    assert main([*argv, "--export", str(tmp_path / "demo.ckpt")]) == 0
    err = capsys.readouterr().err
    assert "pretrain epoch 1" in err and "joint epoch 2" in err
    model, labels, mc = load_model(tmp_path / "demo.ckpt")
    assert labels == ["negative", "positive", "surprise"] and mc.crop_size == 32
    blob = load_checkpoint(tmp_path / "demo.ckpt")
    assert "optimizer" not in blob and blob["extra"]["samples"] == 12
    with torch.no_grad():
        probs = model(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))["logits"].softmax(-1)
    assert probs.shape == (1, 3)
    assert main(argv) == 0  # everything finished: a rerun trains nothing
    assert "epoch" not in capsys.readouterr().err


def test_bad_arguments_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.yaml").write_text(CFG)
    assert main(["--config", str(tmp_path / "c.yaml"), "--stages", "warmup"]) == 2
    assert "--stages" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "c.yaml"), "--pairs", str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("model: {grid: 1}\n")
    with pytest.raises(SystemExit) as ex:
        main(["--config", str(tmp_path / "bad.yaml")])
    assert ex.value.code == 2


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun not installed")
def test_ddp_two_cpu_ranks_with_torchrun(tmp_path: Path) -> None:
    """The DDP path for real: 2 Gloo ranks on the CPU, rank 0 writes the checkpoints."""
    save_pairs(tmp_path / "p.npz", toy_pairs(n_subjects=3, per_class=3))  # 27 pairs: uneven split
    (tmp_path / "c.yaml").write_text(CFG)
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "trainer.train_cli", "--config", str(tmp_path / "c.yaml"),
           "--pairs", str(tmp_path / "p.npz"), "--out", str(tmp_path / "run"), "--threads", "1", "--no-progress",
           "--export", str(tmp_path / "m.ckpt")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr.count("joint epoch 2") == 1  # only rank 0 reports and saves
    assert load_checkpoint(tmp_path / "run" / "joint.ckpt")["epoch"] == 2
    load_model(tmp_path / "m.ckpt")
