"""SMIC-HS loader.

SMIC ships clip folders that span onset..offset and NO annotation file: the label comes from
the folder tree (`ROOT/s1/micro/negative/s1_ne_01/reg_image059596.bmp` in the original) or,
in flattened copies (`ROOT/s01/s1_ne_01/image000123.jpg`), from the clip name's code
(ne / po / sur). There is no apex in the original annotation: apex = the middle frame of the
clip, and every sample says so in `notes` (logged once per load, not per sample). 100 FPS.
Clips whose label cannot be determined are logged and listed in `report.skipped`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from trainer.datasets.casme2 import LoadReport
from trainer.datasets.sample import IMAGE_SUFFIXES, Sample, frame_number, list_frames, log

FPS = 100.0
LABELS = ("negative", "positive", "surprise")
CODES = {"ne": "negative", "po": "positive", "sur": "surprise", "su": "surprise"}
_SUBJECT = re.compile(r"^s(\d+)$", re.IGNORECASE)
APEX_NOTE = "SMIC has no apex annotation: apex = middle frame"


def _label_of(clip_dir: Path, subject_dir: Path) -> str | None:
    for part in clip_dir.relative_to(subject_dir).parts[:-1]:
        if part.lower() in LABELS:
            return part.lower()
    m = re.search(r"_(ne|po|sur|su)_", clip_dir.name.lower() + "_")
    return CODES[m.group(1)] if m else None


def load_smic(root: str | Path, label_map: Callable[[str], str | None] | None = None,
              report: LoadReport | None = None, modality: str = "HS") -> list[Sample]:
    root = Path(root)
    if (root / modality).is_dir():
        root = root / modality
    report = report if report is not None else LoadReport()
    out: list[Sample] = []
    subjects = sorted((p for p in root.iterdir() if p.is_dir() and _SUBJECT.match(p.name)),
                      key=lambda p: int(_SUBJECT.match(p.name).group(1)))
    if not subjects:
        raise FileNotFoundError(f"{root}: no subject folders s1, s2 ... (SMIC-{modality})")
    for sdir in subjects:
        sub = f"s{int(_SUBJECT.match(sdir.name).group(1)):02d}"
        clip_dirs = sorted({p.parent for p in sdir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES})
        for cdir in clip_dirs:
            if "non_micro" in cdir.relative_to(sdir).parts or "non_micro" in cdir.name:
                continue  # SMIC's non-micro clips are not expressions
            report.rows += 1
            where = f"{sub}/{cdir.name}"
            label = _label_of(cdir, sdir)
            frames = list_frames(cdir)
            if label is None:
                report.skipped.append(f"{where}: no label in folder tree or name")
                log.warning("smic %s: no label in folder tree or name; skipped", where)
                continue
            if len(frames) < 3:
                report.skipped.append(f"{where}: {len(frames)} frames")
                log.warning("smic %s: only %d frames; skipped", where, len(frames))
                continue
            onset, offset = frame_number(frames[0]), frame_number(frames[-1])
            apex = frame_number(frames[len(frames) // 2])
            mapped = label_map(label) if label_map else label
            if mapped is None:
                report.unmapped.append(f"{where}: {label}")
                continue
            out.append(Sample(sub, cdir.name, onset, apex, offset, mapped, frames, FPS, "micro", "smic", label,
                              (APEX_NOTE,)))
    if out:
        log.warning("smic: %s (%d samples)", APEX_NOTE, len(out))
    report.samples = len(out)
    return out
