"""CASME II loader on a fixture tree that copies the real layout and sheet, defects included."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from openpyxl import Workbook

from trainer.datasets import LoadReport, casme2_five_class, load_casme2
from trainer.datasets.sample import frame_number

HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion"]


def _frames(folder: Path, numbers: range, prefix: str = "img") -> None:
    import cv2

    folder.mkdir(parents=True)
    for n in numbers:
        cv2.imwrite(str(folder / f"{prefix}{n}.jpg"), np.full((8, 8, 3), n % 255, np.uint8))


@pytest.fixture
def casme2_tree(tmp_path: Path) -> Path:
    root = tmp_path / "CASME2"
    _frames(root / "sub01" / "EP02_01f", range(46, 87))
    _frames(root / "sub01" / "EP03_02", range(1, 60))
    _frames(root / "sub04" / "EP12_01f", range(100, 140))
    _frames(root / "sub17" / "EP05_09", range(20, 41))
    wb = Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws.append(["01", "EP02_01f", 46, 59, 86, "12", "happiness"])
    ws.append(["01", "EP03_02", 1, "/", 59, "4+7", "repression"])  # missing apex (real defect)
    ws.append([4, "EP12_01f", 100, 120, 0, "4", "disgust"])  # offset 0 (real defect)
    ws.append(["17", "EP05_09", 20, 30, 40, "1+2", "fear"])  # 'others' in the 5-class protocol
    ws.append(["17", "EP05_09", 20, 45, 40, "1+2", "fear"])  # apex after offset (typo-like defect)
    ws.append(["26", "EP99_99", 1, 2, 3, "1", "surprise"])  # no such folder
    ws.append([None, None, None, None, None, None, None])  # trailing empty row
    wb.save(root / "CASME2-coding-20140508.xlsx")
    return root


def test_reads_rows_and_repairs_defects(casme2_tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    report = LoadReport()
    with caplog.at_level(logging.WARNING, logger="mfvan.datasets"):
        samples = load_casme2(casme2_tree, report=report)
    by = {s.clip: s for s in samples}
    assert sorted(s.clip for s in samples) == ["EP02_01f", "EP03_02", "EP05_09", "EP05_09", "EP12_01f"]
    clamped = [s for s in samples if s.clip == "EP05_09" and s.notes]
    assert len(clamped) == 1 and clamped[0].apex == 40 and "clamped" in clamped[0].notes[0]
    s = by["EP02_01f"]
    assert (s.subject, s.onset, s.apex, s.offset, s.label, s.fps) == ("sub01", 46, 59, 86, "happiness", 200.0)
    assert s.onset_path.name == "img46.jpg" and s.apex_path.name == "img59.jpg"
    assert len(s.frame_paths) == 41 and frame_number(s.frame_paths[-1]) == 86
    # missing apex -> middle frame, logged and noted
    assert by["EP03_02"].apex == 30 and "apex missing" in by["EP03_02"].notes[0]
    # offset 0 -> last frame of the folder
    assert by["EP12_01f"].offset == 139 and by["EP12_01f"].subject == "sub04"
    assert report.rows == 6 and report.samples == 5
    assert len(report.repaired) == 3 and len(report.skipped) == 1 and "EP99_99" in report.skipped[0]
    assert "apex missing" in caplog.text and "EP99_99" in caplog.text


def test_five_class_mapping(casme2_tree: Path) -> None:
    labels = {s.clip: s.label for s in load_casme2(casme2_tree, label_map=casme2_five_class)}
    assert labels["EP05_09"] == "others" and labels["EP02_01f"] == "happiness"


def test_label_map_none_is_reported_not_silent(casme2_tree: Path) -> None:
    report = LoadReport()
    samples = load_casme2(casme2_tree, report=report, label_map=lambda e: None if e == "fear" else e)
    assert len(samples) == 3 and report.unmapped == ["sub17/EP05_09: fear"] * 2


def test_cropped_layout(tmp_path: Path) -> None:
    root = tmp_path / "CASME2"
    _frames(root / "Cropped" / "sub02" / "EP01_11f", range(10, 20), prefix="reg_img")
    wb = Workbook()
    wb.active.append(HEADER)
    wb.active.append([2, "EP01_11f", 10, 14, 19, "12", "happiness"])
    wb.save(root / "CASME2-coding-20140508.xlsx")
    (s,) = load_casme2(root)
    assert s.apex_path.name == "reg_img14.jpg" and s.apex_path.parent.parent.parent.name == "Cropped"


def test_missing_annotation_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="CASME2-coding"):
        load_casme2(tmp_path)
