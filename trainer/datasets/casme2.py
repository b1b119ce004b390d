"""CASME II loader (and the synthetic corpus, which copies its layout).

Real layout: `ROOT/subXX/EPxx_yy[f]/imgN.jpg`, or the official cropped set
`ROOT/Cropped/subXX/EPxx_yy/reg_imgN.jpg`; annotation `CASME2-coding-*.xlsx` with columns
Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units, Estimated Emotion.
Camera: 200 FPS. The synthetic corpus writes the same columns plus `Kind`, and also an
`annotations.csv` with lower-case names (subject, clip, onset, apex, offset, label, kind);
both are read here.

Known defects of the real sheet, handled by `repair` and logged: ApexFrame "/" (missing) ->
middle frame; OffsetFrame 0 or before the onset -> last frame of the folder. Rows whose
folder is missing are logged and skipped (counted in `LoadReport`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trainer.datasets.sample import Sample, as_int, get_cell, list_frames, log, read_table, repair

FPS = 200.0

# Column aliases: the official sheet's names, then the synthetic corpus' CSV names.
COLUMNS = {
    "subject": ("Subject", "subject"),
    "clip": ("Filename", "clip"),
    "onset": ("OnsetFrame", "onset"),
    "apex": ("ApexFrame", "apex"),
    "offset": ("OffsetFrame", "offset"),
    "emotion": ("Estimated Emotion", "label"),
    "kind": ("Kind", "kind"),
    "fps": ("fps",),
}

# The five classes used for CASME II in MFVAN's Table 1 (others = everything else).
FIVE_CLASSES = {"happiness": "happiness", "disgust": "disgust", "repression": "repression",
                "surprise": "surprise"}


def casme2_five_class(emotion: str) -> str | None:
    return FIVE_CLASSES.get(emotion, "others")


@dataclass
class LoadReport:
    """What a loader did to the annotation: nothing dropped or changed without a line here."""

    rows: int = 0
    samples: int = 0
    skipped: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # label_map returned None


def _get(row: dict, key: str) -> object:
    return get_cell(row, COLUMNS[key])


def find_annotation(root: Path) -> Path:
    for pattern in ("CASME2-coding-*.xlsx", "CASME2*.xlsx", "annotations.csv"):
        hits = sorted(root.glob(pattern))
        if hits:
            return hits[0]
    raise FileNotFoundError(f"{root}: no CASME2-coding-*.xlsx or annotations.csv")


def subject_folder(subject: object) -> str:
    """Sheet subjects are 1, '01', 'sub01' -> 'sub01'."""
    s = str(subject).strip()
    if s.lower().startswith("sub"):
        s = s[3:]
    if isinstance(subject, float):
        s = str(int(subject))
    return f"sub{int(s):02d}" if s.isdigit() else f"sub{s}"


def load_casme2(root: str | Path, annotations: str | Path | None = None, cropped: bool | None = None,
                label_map: Callable[[str], str | None] | None = None,
                report: LoadReport | None = None, dataset: str = "casme2") -> list[Sample]:
    """Samples of a CASME II tree (or a synthetic corpus). `label_map` maps the sheet's emotion
    to the class used (None drops the sample, recorded in `report.unmapped`); the default keeps
    the emotion word as the label. `cropped=None` uses `ROOT/Cropped` when it exists.
    """
    root = Path(root)
    ann = Path(annotations) if annotations else find_annotation(root)
    report = report if report is not None else LoadReport()
    if cropped is None:
        cropped = (root / "Cropped").is_dir()
    base, prefix = (root / "Cropped", "reg_img") if cropped else (root, "")
    rows = read_table(ann, header_contains=())
    report.rows = len(rows)
    clips: dict[Path, tuple[Path, ...]] = {}
    out: list[Sample] = []
    for row in rows:
        subject, clip = _get(row, "subject"), _get(row, "clip")
        if subject is None or clip is None:
            report.skipped.append(f"row without subject/filename: {row}")
            log.warning("%s: row without subject/filename skipped: %s", ann.name, row)
            continue
        sub, clip = subject_folder(subject), str(clip).strip()
        folder = base / sub / clip
        if folder not in clips:
            clips[folder] = list_frames(folder, prefix)
        frames = clips[folder]
        if not frames:
            report.skipped.append(f"{sub}/{clip}: no frames in {folder}")
            log.warning("%s %s/%s: no frames in %s; sample skipped", dataset, sub, clip, folder)
            continue
        fixed = repair(dataset, sub, clip, as_int(_get(row, "onset")), as_int(_get(row, "apex")),
                       as_int(_get(row, "offset")), frames)
        if fixed is None:
            report.skipped.append(f"{sub}/{clip}: onset/offset unusable")
            continue
        onset, apex, offset, notes = fixed
        report.repaired += [f"{sub}/{clip}: {n}" for n in notes]
        emotion = str(_get(row, "emotion") or "").strip().lower()
        label = label_map(emotion) if label_map else emotion
        if label is None:
            report.unmapped.append(f"{sub}/{clip}: {emotion}")
            continue
        kind = str(_get(row, "kind") or "micro").strip().lower()
        fps = float(_get(row, "fps") or FPS)
        out.append(Sample(sub, clip, onset, apex, offset, label, frames, fps, kind, dataset, emotion, tuple(notes)))
    report.samples = len(out)
    return out


def load_synth(root: str | Path, report: LoadReport | None = None, kinds: tuple[str, ...] = ("micro",)) -> list[Sample]:
    """The synthetic corpus through the CASME II path; by default only micro events."""
    return [s for s in load_casme2(root, report=report, dataset="synth") if s.kind in kinds]
