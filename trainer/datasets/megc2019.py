"""MEGC2019 composite: SMIC-HS + CASME II + SAMM in three classes (negative/positive/surprise).

Official mapping (MEGC2019 CDE task): negative = CASME II {disgust, repression} + SAMM {anger,
contempt, disgust, fear, sadness} + SMIC negative; positive = happiness / SMIC positive;
surprise = surprise. Everything else (CASME II fear/sadness/others, SAMM other) is left out
and listed in the report. With the full data: 442 samples, 68 subjects (SMIC 164/16,
CASME II 145/24, SAMM 133/28). Subjects are prefixed by dataset so LOSO folds never merge
two people who share a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from trainer.datasets.casme2 import LoadReport, load_casme2
from trainer.datasets.samm import load_samm
from trainer.datasets.sample import Sample, log
from trainer.datasets.smic import load_smic

LABELS = ("negative", "positive", "surprise")
EXPECTED = {"samples": 442, "subjects": 68}
CASME2_MAP = {"disgust": "negative", "repression": "negative", "happiness": "positive", "surprise": "surprise"}
SAMM_MAP = {"anger": "negative", "contempt": "negative", "disgust": "negative", "fear": "negative",
            "sadness": "negative", "happiness": "positive", "surprise": "surprise"}


@dataclass
class CompositeReport:
    parts: dict[str, LoadReport] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    subjects: int = 0


def load_megc2019(smic_root: str | Path, casme2_root: str | Path, samm_root: str | Path,
                  report: CompositeReport | None = None) -> list[Sample]:
    report = report if report is not None else CompositeReport()
    parts = {name: LoadReport() for name in ("smic", "casme2", "samm")}
    report.parts = parts
    samples = (load_smic(smic_root, report=parts["smic"])
               + load_casme2(casme2_root, label_map=CASME2_MAP.get, report=parts["casme2"])
               + load_samm(samm_root, label_map=SAMM_MAP.get, report=parts["samm"]))
    out = [replace(s, subject=f"{s.dataset}_{s.subject}") for s in samples]
    report.counts = {lab: sum(s.label == lab for s in out) for lab in LABELS}
    report.subjects = len({s.subject for s in out})
    if len(out) != EXPECTED["samples"] or report.subjects != EXPECTED["subjects"]:
        log.warning("megc2019: %d samples / %d subjects, the official composite has %d / %d",
                    len(out), report.subjects, EXPECTED["samples"], EXPECTED["subjects"])
    return out
