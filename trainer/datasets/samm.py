"""SAMM loader.

Layout: `ROOT/[SAMM/]006/006_1_2/006_05562.jpg` (subject folder, clip folder, frames named
subject_framenumber). Annotation `SAMM_Micro_FACS_Codes_v2.xlsx`: several rows of free text
above the header row (found by its cells, not a fixed offset), then columns Subject, Filename,
Inducement Code, Onset Frame, Apex Frame, Offset Frame, Duration, Type, Action Units, Notes,
Estimated Emotion, Objective Classes. 200 FPS.

Known defects, repaired by `repair` and logged: Apex Frame -1 (missing) -> middle frame;
Offset Frame -1 / 0 / before onset -> last frame in the clip folder. Emotion "Other" is kept
as "other" (the composite drops it, recorded as unmapped).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from trainer.datasets.casme2 import LoadReport
from trainer.datasets.sample import Sample, as_int, get_cell, list_frames, log, read_table, repair

FPS = 200.0
HEADER = ("Subject", "Filename", "Onset Frame")


def find_annotation(root: Path) -> Path:
    hits = sorted(root.glob("SAMM_Micro_FACS_Codes*.xlsx")) + sorted(root.glob("*/SAMM_Micro_FACS_Codes*.xlsx"))
    if not hits:
        raise FileNotFoundError(f"{root}: no SAMM_Micro_FACS_Codes*.xlsx")
    return hits[0]


def load_samm(root: str | Path, annotations: str | Path | None = None,
              label_map: Callable[[str], str | None] | None = None,
              report: LoadReport | None = None) -> list[Sample]:
    root = Path(root)
    ann = Path(annotations) if annotations else find_annotation(root)
    frames_root = root / "SAMM" if (root / "SAMM").is_dir() else root
    report = report if report is not None else LoadReport()
    rows = read_table(ann, header_contains=HEADER)
    report.rows = len(rows)
    out: list[Sample] = []
    for row in rows:
        subj, clip = get_cell(row, ("Subject",)), get_cell(row, ("Filename",))
        if subj is None or clip is None:
            report.skipped.append(f"row without subject/filename: {row}")
            log.warning("%s: row without subject/filename skipped", ann.name)
            continue
        sub = f"{int(subj):03d}" if as_int(subj) is not None else str(subj).strip()
        clip = str(clip).strip()
        frames = list_frames(frames_root / sub / clip)
        if not frames:
            report.skipped.append(f"{sub}/{clip}: no frames")
            log.warning("samm %s/%s: no frames in %s; sample skipped", sub, clip, frames_root / sub / clip)
            continue
        fixed = repair("samm", sub, clip, as_int(get_cell(row, ("Onset Frame",))),
                       as_int(get_cell(row, ("Apex Frame",))), as_int(get_cell(row, ("Offset Frame",))), frames)
        if fixed is None:
            report.skipped.append(f"{sub}/{clip}: onset/offset unusable")
            continue
        onset, apex, offset, notes = fixed
        report.repaired += [f"{sub}/{clip}: {n}" for n in notes]
        emotion = str(get_cell(row, ("Estimated Emotion",)) or "").strip().lower()
        label = label_map(emotion) if label_map else emotion
        if label is None:
            report.unmapped.append(f"{sub}/{clip}: {emotion}")
            continue
        out.append(Sample(sub, clip, onset, apex, offset, label, frames, FPS, "micro", "samm", emotion,
                          tuple(notes)))
    report.samples = len(out)
    return out
