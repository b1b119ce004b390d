"""Bridge from `data.dataset` to the data helper's loaders in `trainer.datasets`."""

from __future__ import annotations

import importlib
from typing import Any

from engine.config.train import DataConfig


def load_samples(cfg: DataConfig) -> list[Any]:
    if not cfg.root:
        raise ValueError("no dataset root: give --data DIR (or data.root in the config)")
    try:
        mod = importlib.import_module("trainer.datasets")
    except ImportError as exc:
        raise ValueError(f"dataset loaders unavailable ({exc})") from None
    name = "casme2" if cfg.dataset == "synth" else cfg.dataset  # the synthetic corpus uses CASME II's layout
    fn = getattr(mod, "load", None) or getattr(mod, f"load_{name}", None)
    if fn is None:
        raise ValueError(f"trainer.datasets has no loader for {cfg.dataset!r}")
    kwargs: dict[str, Any] = {}
    if cfg.annotations:
        kwargs["annotations"] = cfg.annotations
    samples = list(fn(name, cfg.root, **kwargs) if fn.__name__ == "load" else fn(cfg.root, **kwargs))
    if not samples:
        raise ValueError(f"{cfg.root}: the {name} loader found no samples")
    return samples
