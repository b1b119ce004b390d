"""Bridge from `data.dataset` to the data helper's loaders in `trainer.datasets`."""

from __future__ import annotations

import csv
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.train import DataConfig


@dataclass(frozen=True)
class CsvSample:
    """Same fields as trainer.datasets' Sample (used only by the fallback reader below)."""

    subject: str
    clip: str
    onset: int
    apex: int
    offset: int
    label: str
    frame_paths: tuple[str, ...]
    fps: float
    kind: str


def synth_csv_samples(root: str | Path) -> list[CsvSample]:
    """Read `ROOT/annotations.csv` of `mfvan-synth` (subject, clip, onset, apex, offset, label,
    kind, fps; frames `ROOT/subject/clip/imgN.*`). WHY: a fallback so training does not wait
    on the loader package; the CASME II loader in trainer.datasets is preferred when present."""
    root = Path(root)
    ann = root / "annotations.csv"
    if not ann.is_file():
        raise ValueError(f"{root}: no annotations.csv (is this an mfvan-synth corpus?)")
    out, frames = [], {}
    with ann.open(newline="") as fh:
        for row in csv.DictReader(fh):
            key = (row["subject"], row["clip"])
            if key not in frames:
                frames[key] = tuple(sorted((str(p) for p in (root / key[0] / key[1]).glob("img*")), key=_frame_no))
            out.append(CsvSample(row["subject"], row["clip"], int(row["onset"]), int(row["apex"]), int(row["offset"]),
                                 row["label"], frames[key], float(row.get("fps") or 200.0), row.get("kind") or "micro"))
    return out


def _frame_no(p: str) -> int:
    digits = "".join(ch for ch in Path(p).stem if ch.isdigit())
    return int(digits) if digits else -1


def load_samples(cfg: DataConfig) -> list[Any]:
    """Samples of `cfg.dataset` under `cfg.root` through trainer.datasets' loaders."""
    if not cfg.root:
        raise ValueError("no dataset root: give --data DIR (or data.root in the config)")
    if not Path(cfg.root).is_dir():
        raise ValueError(f"{cfg.root}: no such dataset folder")
    try:
        mod = importlib.import_module("trainer.datasets")
    except ImportError:
        mod = None
    loaders = getattr(mod, "LOADERS", {}) if mod is not None else {}
    if cfg.dataset == "megc2019":
        raise ValueError("megc2019 needs three roots (SMIC, CASME II, SAMM): use trainer.datasets.load_megc2019 and --pairs")
    fn = loaders.get(cfg.dataset)
    if fn is None:
        if cfg.dataset == "synth":
            return synth_csv_samples(cfg.root)
        raise ValueError(f"trainer.datasets has no loader for {cfg.dataset!r}")
    if cfg.dataset == "synth":
        kinds = ("micro", "macro") if cfg.kind == "all" else (cfg.kind,)
        samples = list(fn(cfg.root, kinds=kinds))
    else:
        samples = list(fn(cfg.root, cfg.annotations) if cfg.annotations else fn(cfg.root))
    if not samples:
        raise ValueError(f"{cfg.root}: the {cfg.dataset} loader found no samples")
    return samples
