"""Name -> builder registry (the timm pattern).

WHY: the trainer, the LOSO evaluator and the engine's artefact builder must all build the very
same network from a checkpoint's `ModelConfig`; a single registry keyed by `cfg.name` makes
that a lookup instead of three copies of constructor code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from trainer.config.train import ModelConfig

Builder = Callable[[ModelConfig], nn.Module]
_REGISTRY: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make `builder(cfg)` reachable as `create_model(cfg)` when `cfg.name == name`."""

    def wrap(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(cfg: ModelConfig | None = None) -> nn.Module:
    """Build the network named by `cfg.name` (defaults: `ModelConfig()`), randomly initialised."""
    cfg = cfg or ModelConfig()
    try:
        builder = _REGISTRY[cfg.name]
    except KeyError:
        raise ValueError(f"unknown model {cfg.name!r}; registered: {', '.join(list_models())}") from None
    return builder(cfg)
