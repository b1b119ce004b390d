"""Checkpoints: one dict of plain types + tensors, loadable with `torch.load(weights_only=True)`.

Format "mfvan-ckpt/1" keys: format, model_config (ModelConfig dict), labels, state_dict,
train_config (TrainConfig dict or {}), git_rev, stage, epoch, input_spec, and optionally
optimizer / extra (resume state). WHY weights_only: a checkpoint may come from elsewhere and
unpickling arbitrary objects runs code; WHY tmp + os.replace: a crash mid-write must never
leave a truncated file where a good checkpoint was.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from trainer.config.train import ModelConfig

FORMAT = "mfvan-ckpt/1"


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt or of another format (message says which)."""


def git_revision(cwd: str | Path | None = None) -> str:
    """The repo's HEAD (with '+dirty' if the tree has changes), or 'unknown' outside git."""
    cwd = str(cwd or Path(__file__).resolve().parent)
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def input_spec(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "inputs": ["onset", "apex"],
        "input_form": cfg.input_form,
        "layout": "NCHW",
        "color": "RGB",
        "dtype": "float32",
        "range": [0.0, 1.0],
        "crop_size": cfg.crop_size,
        "outputs": ["probs", "heatmaps"],
        "heatmap_channels": ["fused", "scale1", "scale2", "scale3"],
        "heatmap_grid": cfg.grid,
    }


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    model_config: ModelConfig,
    labels: list[str],
    *,
    train_config: dict[str, Any] | None = None,
    stage: str = "",
    epoch: int = 0,
    optimizer: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write atomically (temp file in the same folder, fsync, os.replace)."""
    if len(labels) != model_config.num_classes:
        raise ValueError(f"{len(labels)} labels for a {model_config.num_classes}-class model")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = model.module.state_dict() if hasattr(model, "module") else model.state_dict()
    blob: dict[str, Any] = {
        "format": FORMAT,
        "model_config": model_config.model_dump(mode="json"),
        "labels": list(labels),
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
        "train_config": dict(train_config or {}),
        "git_rev": git_revision(),
        "stage": stage,
        "epoch": int(epoch),
        "input_spec": input_spec(model_config),
    }
    if optimizer is not None:
        blob["optimizer"] = optimizer
    if extra is not None:
        blob["extra"] = extra
    # Serialise in memory first: torch's zip writer turns a failed write (ENOSPC, EFBIG) into
    # "unexpected pos N vs M"; a plain write of the bytes raises the OSError that names the cause.
    buf = io.BytesIO()
    torch.save(blob, buf)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)  # mkstemp makes 0600; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint (train one with `mfvan-train`)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, foreign pickle
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{path}: format {got!r}, expected {FORMAT!r}")
    return blob


def load_model(path: str | Path) -> tuple[nn.Module, list[str], ModelConfig]:
    """Rebuild the network from the checkpoint's own config and load its weights (eval mode)."""
    from trainer.models import create_model

    blob = load_checkpoint(path)
    cfg = ModelConfig.model_validate(blob["model_config"])
    model = create_model(cfg)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit model {cfg.name!r}: {str(exc)[:300]}") from None
    return model.eval(), list(blob["labels"]), cfg
