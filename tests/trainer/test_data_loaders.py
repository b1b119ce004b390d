"""SAMM, SMIC-HS and MEGC2019-composite loaders on fixture trees that copy the real layouts,
annotation sheets (written here with openpyxl) and known defects."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from openpyxl import Workbook

from trainer.datasets import CompositeReport, LoadReport, load_megc2019, load_samm, load_smic

SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
               "Type", "Action Units", "Notes", "Estimated Emotion", "Objective Classes"]
CASME2_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
                 "Estimated Emotion"]


def _frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), np.full((6, 6, 3), i % 255, np.uint8))


def make_samm(root: Path) -> Path:
    _frames(root / "SAMM" / "006" / "006_1_2", [f"006_{n:05d}.jpg" for n in range(5562, 5600)])
    _frames(root / "SAMM" / "006" / "006_1_3", [f"006_{n:05d}.jpg" for n in range(1000, 1030)])
    _frames(root / "SAMM" / "011" / "011_2_1", [f"011_{n:05d}.jpg" for n in range(200, 260)])
    _frames(root / "SAMM" / "011" / "011_3_3", [f"011_{n:05d}.jpg" for n in range(10, 40)])
    wb = Workbook()
    ws = wb.active
    # the real sheet starts with free text rows above its header
    ws.append(["SAMM Micro-Movement Database FACS codes"])
    ws.append(["Coded by two certified FACS coders; -1 means not determined."])
    ws.append([])
    ws.append(SAMM_HEADER)
    ws.append([6, "006_1_2", "1", 5562, 5588, 5599, 37, "Micro - 1/2", "R9+R10", "", "Disgust", "III"])
    ws.append([6, "006_1_3", "1", 1000, -1, 1029, 29, "Micro - 1/2", "12", "", "Happiness", "I"])  # no apex
    ws.append([11, "011_2_1", "2", 200, 230, -1, 0, "Micro - 1/2", "1+2", "", "Surprise", "V"])  # no offset
    ws.append([11, "011_3_3", "3", 10, 20, 39, 29, "Micro - 1/2", "14", "", "Other", "VII"])
    ws.append([11, "011_9_9", "9", 10, 20, 39, 29, "Micro - 1/2", "14", "", "Anger", "III"])  # no folder
    wb.save(root / "SAMM_Micro_FACS_Codes_v2.xlsx")
    return root


def make_smic(root: Path) -> Path:
    hs = root / "HS"
    _frames(hs / "s1" / "micro" / "negative" / "s1_ne_01", [f"reg_image{n:06d}.bmp" for n in range(59596, 59620)])
    _frames(hs / "s1" / "micro" / "positive" / "s1_po_02", [f"reg_image{n:06d}.bmp" for n in range(100, 131)])
    _frames(hs / "s3" / "micro" / "surprise" / "s3_sur_01", [f"reg_image{n:06d}.bmp" for n in range(7, 20)])
    _frames(hs / "s3" / "non_micro" / "s3_no_01", [f"reg_image{n:06d}.bmp" for n in range(7, 20)])
    _frames(hs / "s20" / "s20_xx_01", [f"image{n:06d}.jpg" for n in range(1, 20)])  # unknown label
    _frames(hs / "s20" / "s20_ne_02", [f"image{n:06d}.jpg" for n in range(123, 140)])  # flattened copy
    return root


def make_casme2(root: Path) -> Path:
    for sub, clip, rng in (("sub01", "EP02_01f", range(46, 87)), ("sub02", "EP09_01", range(1, 40)),
                           ("sub05", "EP07_04", range(10, 50))):
        _frames(root / sub / clip, [f"img{n}.jpg" for n in rng])
    wb = Workbook()
    ws = wb.active
    ws.append(CASME2_HEADER)
    ws.append(["01", "EP02_01f", 46, 59, 86, "12", "happiness"])
    ws.append(["02", "EP09_01", 1, "/", 39, "4", "repression"])
    ws.append(["05", "EP07_04", 10, 20, 49, "14", "others"])
    wb.save(root / "CASME2-coding-20140508.xlsx")
    return root


def test_samm_header_below_text_and_defects(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    report = LoadReport()
    with caplog.at_level(logging.WARNING, logger="mfvan.datasets"):
        samples = load_samm(make_samm(tmp_path), report=report)
    by = {s.clip: s for s in samples}
    assert sorted(by) == ["006_1_2", "006_1_3", "011_2_1", "011_3_3"]
    s = by["006_1_2"]
    assert (s.subject, s.onset, s.apex, s.offset, s.label, s.fps) == ("006", 5562, 5588, 5599, "disgust", 200.0)
    assert s.apex_path.name == "006_05588.jpg"
    assert by["006_1_3"].apex == 1014 and by["006_1_3"].notes  # -1 apex -> middle
    assert by["011_2_1"].offset == 259 and by["011_2_1"].notes  # -1 offset -> last frame
    assert report.rows == 5 and len(report.skipped) == 1 and len(report.repaired) == 2
    assert "011_9_9" in caplog.text and "apex missing" in caplog.text


def test_samm_without_header_is_a_clear_error(tmp_path: Path) -> None:
    wb = Workbook()
    wb.active.append(["just text"])
    wb.save(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx")
    with pytest.raises(ValueError, match="no header row"):
        load_samm(tmp_path)


def test_smic_labels_from_tree_apex_is_middle(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    report = LoadReport()
    with caplog.at_level(logging.WARNING, logger="mfvan.datasets"):
        samples = load_smic(make_smic(tmp_path), report=report)
    by = {s.clip: s for s in samples}
    assert sorted(by) == ["s1_ne_01", "s1_po_02", "s20_ne_02", "s3_sur_01"]
    s = by["s1_ne_01"]
    assert (s.subject, s.label, s.onset, s.offset, s.fps) == ("s01", "negative", 59596, 59619, 100.0)
    assert s.apex == 59596 + 12 and "no apex" in s.notes[0]
    assert by["s20_ne_02"].label == "negative" and by["s3_sur_01"].label == "surprise"
    assert report.skipped == ["s20/s20_xx_01: no label in folder tree or name"]
    assert "no apex annotation" in caplog.text


def test_megc2019_composite_mapping_and_subjects(tmp_path: Path) -> None:
    report = CompositeReport()
    samples = load_megc2019(make_smic(tmp_path / "smic"), make_casme2(tmp_path / "casme2"),
                            make_samm(tmp_path / "samm"), report=report)
    got = sorted((s.subject, s.clip, s.label) for s in samples)
    assert got == sorted([
        ("smic_s01", "s1_ne_01", "negative"), ("smic_s01", "s1_po_02", "positive"),
        ("smic_s03", "s3_sur_01", "surprise"), ("smic_s20", "s20_ne_02", "negative"),
        ("casme2_sub01", "EP02_01f", "positive"), ("casme2_sub02", "EP09_01", "negative"),
        ("samm_006", "006_1_2", "negative"), ("samm_006", "006_1_3", "positive"),
        ("samm_011", "011_2_1", "surprise"),
    ])
    assert report.parts["casme2"].unmapped == ["sub05/EP07_04: others"]
    assert report.parts["samm"].unmapped == ["011/011_3_3: other"]
    assert report.counts == {"negative": 4, "positive": 3, "surprise": 2} and report.subjects == 7
