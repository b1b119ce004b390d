"""Report files: report.json, confusion-matrix PNGs, per-class and comparison tables,
attention overlays on apex frames (the paper's Figures 5-6)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from trainer.models import HEATMAP_CHANNELS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=float) + "\n")
    tmp.replace(path)


def confusion_png(path: Path, cm: np.ndarray, names: list[str], title: str) -> None:
    plt = _plt()
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(names), 1.2 + 1.0 * len(names)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.2f}", ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4f}"
        return str(v)

    out = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out) + "\n"


def overlays_png(
    path: Path,
    apex: np.ndarray,
    heatmaps: np.ndarray,
    titles: list[str],
) -> None:
    """Rows = samples; columns = apex crop, then the fused and per-scale attention maps
    upsampled to the crop and blended over it (jet colour map)."""
    plt = _plt()
    n = len(apex)
    if n == 0:
        return
    cols = 1 + len(HEATMAP_CHANNELS)
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 2.0 * n), squeeze=False)
    s = apex.shape[1]
    for r in range(n):
        axes[r, 0].imshow(apex[r])
        axes[r, 0].set_title(titles[r], fontsize=7)
        for c, name in enumerate(HEATMAP_CHANNELS):
            hm = cv2.resize(heatmaps[r, c].astype(np.float32), (s, s), interpolation=cv2.INTER_LINEAR)
            colour = cv2.applyColorMap((np.clip(hm, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
            axes[r, c + 1].imshow((0.55 * apex[r] + 0.45 * colour).astype(np.uint8))
            if r == 0:
                axes[r, c + 1].set_title(name, fontsize=8)
        for ax in axes[r]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
