"""The unit every dataset loader yields, and helpers shared by the loaders."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

log = logging.getLogger("mfvan.datasets")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
KINDS = ("micro", "macro")


@dataclass(frozen=True)
class Sample:
    """One annotated expression.

    `onset`, `apex`, `offset` are frame NUMBERS as the dataset writes them (the N of imgN.jpg,
    SAMM's 05562), not list positions, because real datasets do not start at 1 and sometimes
    skip frames. `frame_paths` holds every frame of the clip, sorted by number; use
    `path(n)` / `onset_path` / `apex_path` to get a file. `notes` records every repair the
    loader made to the annotation (missing apex, offset before apex ...), so nothing is
    silently changed.
    """

    subject: str
    clip: str
    onset: int
    apex: int
    offset: int
    label: str
    frame_paths: tuple[Path, ...] = field(repr=False)
    fps: float
    kind: str = "micro"
    dataset: str = ""
    emotion: str = ""  # the dataset's own emotion word before any label mapping
    notes: tuple[str, ...] = ()

    def path(self, number: int) -> Path:
        idx = _index(self.frame_paths)
        if number not in idx:
            raise KeyError(f"{self.subject}/{self.clip}: no frame {number}")
        return self.frame_paths[idx[number]]

    @property
    def onset_path(self) -> Path:
        return self.path(self.onset)

    @property
    def apex_path(self) -> Path:
        return self.path(self.apex)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.subject}/{self.clip}/{self.onset}"

    @property
    def duration_ms(self) -> float:
        return (self.offset - self.onset) * 1000.0 / self.fps


@lru_cache(maxsize=256)
def _index(paths: tuple[Path, ...]) -> dict[int, int]:
    """Frame number -> position; cached because clips share one tuple across their events."""
    return {frame_number(p): i for i, p in enumerate(paths)}


_NUM = re.compile(r"(\d+)(?!.*\d)")


def frame_number(path: Path | str) -> int:
    """The last digit group of the file stem: img46 -> 46, 006_05562 -> 5562, reg_img7 -> 7."""
    m = _NUM.search(Path(path).stem)
    if m is None:
        raise ValueError(f"no frame number in {path}")
    return int(m.group(1))


def list_frames(folder: Path, prefix: str = "") -> tuple[Path, ...]:
    """Image files in `folder` (optionally starting with `prefix`), sorted by frame number."""
    if not folder.is_dir():
        return ()
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name.startswith(prefix)]
    return tuple(sorted(files, key=frame_number))


def read_table(path: Path, header_contains: Iterable[str] = ()) -> list[dict[str, object]]:
    """Rows of an .xlsx (first sheet) or .csv as dicts keyed by the header row.

    `header_contains`: the header is the first row holding all these cells (SAMM's sheet has
    text rows above its header). Empty rows are skipped.
    """
    wanted = {w.strip().lower() for w in header_contains}
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as fh:
            raw = [list(r) for r in csv.reader(fh)]
    else:
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True, data_only=True)
        try:
            raw = [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
        finally:
            wb.close()
    head = 0
    if wanted:
        for i, r in enumerate(raw):
            cells = {str(c).strip().lower() for c in r if c is not None}
            if wanted <= cells:
                head = i
                break
        else:
            raise ValueError(f"{path}: no header row with {sorted(wanted)}")
    header = [str(c).strip() if c is not None else "" for c in raw[head]]
    rows = []
    for r in raw[head + 1:]:
        if all(c is None or str(c).strip() == "" for c in r):
            continue
        rows.append({h: (r[i] if i < len(r) else None) for i, h in enumerate(header) if h})
    return rows


def as_int(value: object) -> int | None:
    """Annotation cells hold ints, floats, '123', '/', '-', '' or None; None means unusable."""
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if value != value or float(value) != int(value) or value < 0:  # NaN, fractional, SAMM's -1
            return None
        return int(value)
    s = str(value).strip()
    return int(s) if re.fullmatch(r"\d+", s) else None


def get_cell(row: dict, names: Iterable[str]) -> object:
    """First of `names` present in the row; header cells compared without case and spaces."""
    norm = {re.sub(r"\s+", "", str(k)).lower(): v for k, v in row.items()}
    for name in names:
        if name in row:
            return row[name]
        key = re.sub(r"\s+", "", name).lower()
        if key in norm:
            return norm[key]
    return None


def repair(dataset: str, subject: str, clip: str, onset: int | None, apex: int | None, offset: int | None,
           frames: tuple[Path, ...]) -> tuple[int, int, int, list[str]] | None:
    """Apply the documented repairs for known annotation defects; None if unrecoverable.

    - onset missing: unrecoverable (the pair needs it) -> None, logged;
    - offset missing / 0 / before onset: the clip's last frame (CASME II: its folders end at
      the offset), logged;
    - apex missing: the middle of onset..offset (SMIC has no apex at all), logged;
    - apex outside onset..offset: clamped, logged.
    Every repair is logged at WARNING and recorded in the sample's `notes`.
    """
    notes: list[str] = []
    where = f"{dataset} {subject}/{clip}"
    if onset is None:
        log.warning("%s: no usable onset; sample skipped", where)
        return None
    last = frame_number(frames[-1]) if frames else None
    if offset is None or offset <= onset:
        if last is None or last <= onset:
            log.warning("%s: offset %s unusable and no frames after onset; sample skipped", where, offset)
            return None
        notes.append(f"offset {offset} unusable: set to last frame {last}")
        offset = last
    if apex is None:
        apex = (onset + offset) // 2
        notes.append(f"apex missing: set to middle frame {apex}")
    elif not onset <= apex <= offset:
        clamped = min(max(apex, onset), offset)
        notes.append(f"apex {apex} outside onset..offset: clamped to {clamped}")
        apex = clamped
    for n in notes:
        log.warning("%s: %s", where, n)
    return onset, apex, offset, notes
