"""Bridge from a train config's `data` section to the loaders in `trainer.datasets`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.config.train import DataConfig
from trainer.datasets import LOADERS


def load_samples(cfg: DataConfig) -> list[Any]:
    """Samples of `cfg.dataset` under `cfg.root` through trainer.datasets' loaders."""
    if not cfg.root:
        raise ValueError("no dataset root: give --data DIR (or data.root in the config)")
    if not Path(cfg.root).is_dir():
        raise ValueError(f"{cfg.root}: no such dataset folder")
    if cfg.dataset == "megc2019":
        raise ValueError("megc2019 needs three roots (SMIC, CASME II, SAMM): use trainer.datasets.load_megc2019 and --pairs")
    fn = LOADERS.get(cfg.dataset)
    if fn is None:
        raise ValueError(f"trainer.datasets has no loader for {cfg.dataset!r}")
    if cfg.dataset == "synth":
        kinds = ("micro", "macro") if cfg.kind == "all" else (cfg.kind,)
        samples = list(fn(cfg.root, kinds=kinds))
    else:
        samples = list(fn(cfg.root, cfg.annotations) if cfg.annotations else fn(cfg.root))
    if not samples:
        raise ValueError(f"{cfg.root}: the {cfg.dataset} loader found no samples")
    return samples
