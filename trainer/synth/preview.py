"""Contact sheets: onset, apex and amplified |apex - onset| for each event, to check by eye
that the motion is local to the face regions and plausible (no global shift, no tearing).

`render_sheet` renders fresh events in memory and shows two difference columns: the clean
warp alone, and the same event with the corpus' distractors (drift, rotation, noise,
flicker), which is what a spotter sees. `corpus_sheet` draws the events of a written clip.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from trainer.synth.render import Distractors, PlannedEvent, Renderer

CROP = 256


def _crop(img: np.ndarray, centre: np.ndarray) -> np.ndarray:
    x, y = int(centre[0]) - CROP // 2, int(centre[1]) - CROP // 2
    m = np.float32([[1, 0, -x], [0, 1, -y]])
    return cv2.warpAffine(img, m, (CROP, CROP), borderMode=cv2.BORDER_CONSTANT)


def _diff(a: np.ndarray, b: np.ndarray, gain: float) -> np.ndarray:
    d = np.abs(b.astype(np.int16) - a.astype(np.int16)).max(2).astype(np.float32) * gain
    return cv2.applyColorMap(np.clip(d, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    cv2.putText(tile, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def _write(rows: list[np.ndarray], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), np.vstack(rows)):
        raise OSError(f"cannot write {out}")
    return out


def render_sheet(out: Path, identity_index: int = 0, seed: int = 0, gain: float = 12.0) -> Path:
    from trainer.synth.identities import SPECS, place

    if not 0 <= identity_index < len(SPECS):
        raise ValueError(f"subject must be 1..{len(SPECS)}")
    ident = place(SPECS[identity_index])
    events = [PlannedEvent("micro", "negative", 10, 30, 60, 4.0), PlannedEvent("micro", "positive", 10, 30, 60, 4.0),
              PlannedEvent("micro", "surprise", 10, 30, 60, 4.0), PlannedEvent("micro", "positive", 10, 30, 60, 1.0),
              PlannedEvent("macro", "surprise", 10, 30, 60, 14.0), PlannedEvent("blink", "", 10, 30, 60, 0.0)]
    still = Distractors(drift_px=0, rotation_deg=0, scale=0, noise_sigma=0, flicker=0)
    noisy = Distractors(drift_px=3, rotation_deg=1.0, noise_sigma=2.0, flicker=0.01)
    centre = ident.landmarks.mean(0)
    rows = []
    for e in events:
        clean = Renderer(ident, [e], 61, seed, distractors=still)
        real = Renderer(ident, [e], 61, seed, distractors=noisy)
        a, b = clean.frame(e.onset), clean.frame(e.apex)
        ra, rb = real.frame(e.onset), real.frame(e.apex)
        name = f"{e.kind} {e.label} {e.amplitude_px:g}px" if e.kind != "blink" else "blink"
        rows.append(np.hstack([
            _label(_crop(a, centre), f"onset | {name}"), _label(_crop(b, centre), "apex"),
            _label(_diff(_crop(a, centre), _crop(b, centre), gain), f"|diff| x{gain:g} warp only"),
            _label(_diff(_crop(ra, centre), _crop(rb, centre), gain), f"x{gain:g} +drift,noise"),
        ]))
    return _write(rows, out)


def corpus_sheet(corpus: Path, out: Path, clip: str | None = None, gain: float = 12.0,
                 max_events: int = 8) -> Path:
    lines = [json.loads(x) for x in (corpus / "ground_truth.jsonl").read_text().splitlines() if x.strip()]
    if clip:
        lines = [g for g in lines if f"{g['subject']}/{g['clip']}" == clip]
        if not lines:
            raise KeyError(f"no clip {clip} in {corpus}")
    gt = lines[0]
    folder = corpus / gt["subject"] / gt["clip"]
    centre = np.array(gt["landmarks68"], np.float32).mean(0)
    rows = []
    for e in gt["events"][:max_events]:
        a = cv2.imread(str(folder / f"img{e['onset']}.png"))
        b = cv2.imread(str(folder / f"img{e['apex']}.png"))
        if a is None or b is None:
            raise OSError(f"missing frames of {folder}")
        name = f"{e['kind']} {e['label']} {e['amplitude_px']:g}px" if e["kind"] != "blink" else "blink"
        rows.append(np.hstack([_label(_crop(a, centre), f"{gt['subject']}/{gt['clip']} img{e['onset']} {name}"),
                               _label(_crop(b, centre), f"apex img{e['apex']}"),
                               _label(_diff(_crop(a, centre), _crop(b, centre), gain), f"|diff| x{gain:g}")]))
    return _write(rows, out)
