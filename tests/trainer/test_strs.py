"""mfvan-eval strs: STRS on hand-made tables with known answers, the strict rules against the
published script's (genbing99/STRS-Metric) on the cases where they differ, and the CLI on
mfvan-analyze-shaped files."""

from __future__ import annotations

import csv
import json

import pytest

from trainer.evaluate.strs import Interval, main, strs, video_key


def iv(video: str, onset: int, offset: int, label: str = "positive") -> Interval:
    return Interval(video_key(*video.split("/")), onset, offset, label, video.split("/")[0].removeprefix("sub").lstrip("0"))


def test_perfect_and_known_scores() -> None:
    gt = [iv("sub01/EP01", 10, 40, "positive"), iv("sub01/EP01", 100, 130, "negative"), iv("sub02/EP01", 5, 30, "surprise")]
    assert strs(gt, gt)["STRS"] == pytest.approx(1.0)
    # one miss, one spurious, one wrong label among the two found
    pred = [iv("sub01/EP01", 12, 40, "positive"), iv("sub01/EP01", 101, 129, "positive"), iv("sub02/EP01", 200, 230, "surprise")]
    r = strs(pred, gt)
    assert (r["spotting"]["tp"], r["spotting"]["fp"], r["spotting"]["fn"]) == (2, 1, 1)
    assert r["spotting"]["f1"] == pytest.approx(2 / 3)
    assert r["analysis"]["pairs"] == 2 and r["analysis"]["correct"] == 1
    # per class on the TPs: positive P 1/2 R 1; negative P 0 R 0; surprise absent: P 0 R 0
    mp, mr = (0.5 + 0 + 0) / 3, (1 + 0 + 0) / 3
    assert r["analysis"]["f1"] == pytest.approx(2 * mp * mr / (mp + mr))
    assert r["STRS"] == pytest.approx(r["spotting"]["f1"] * r["analysis"]["f1"])


def test_iou_is_inclusive_and_threshold_is_at_least_half() -> None:
    gt = [iv("sub01/EP01", 0, 9)]  # 10 frames
    assert strs([iv("sub01/EP01", 5, 14)], gt)["spotting"]["tp"] == 0  # 5 / 15
    assert strs([iv("sub01/EP01", 3, 12)], gt)["spotting"]["tp"] == 1  # 7 / 13 > 0.5
    assert strs([iv("sub01/EP01", 0, 4)], gt)["spotting"]["tp"] == 1  # 5 / 10 == 0.5 counts


def test_one_prediction_over_two_ground_truths() -> None:
    gt = [iv("sub01/EP01", 0, 9, "positive"), iv("sub01/EP01", 2, 11, "positive")]
    pred = [iv("sub01/EP01", 1, 10, "positive")]
    strict, published = strs(pred, gt), strs(pred, gt, rules="published")
    assert (strict["spotting"]["tp"], strict["spotting"]["fn"]) == (1, 1)
    assert (published["spotting"]["tp"], published["spotting"]["fn"]) == (2, 0)  # one prediction, two TPs
    assert published["spotting"]["f1"] == 1.0 > strict["spotting"]["f1"]


def test_two_predictions_on_one_ground_truth() -> None:
    gt = [iv("sub01/EP01", 0, 19)]
    pred = [iv("sub01/EP01", 0, 15), iv("sub01/EP01", 3, 19)]
    strict, published = strs(pred, gt), strs(pred, gt, rules="published")
    assert (strict["spotting"]["tp"], strict["spotting"]["fp"]) == (1, 1)
    assert (published["spotting"]["tp"], published["spotting"]["fp"]) == (2, 0)


def test_event_free_videos_and_subjects_without_predictions() -> None:
    gt = [iv("sub01/EP01", 10, 40), iv("sub02/EP01", 10, 40)]
    pred = [iv("sub01/EP01", 10, 40), iv("sub01/EP09", 50, 80), iv("sub01/EP09", 150, 180)]  # EP09: no events
    strict, published = strs(pred, gt), strs(pred, gt, rules="published")
    assert (strict["spotting"]["tp"], strict["spotting"]["fp"], strict["spotting"]["fn"]) == (1, 2, 1)
    assert strict["videos"]["event_free_with_predictions"] == 1
    # the script skips the event-free video and sub02 (no prediction): a perfect score
    assert (published["spotting"]["tp"], published["spotting"]["fp"], published["spotting"]["fn"]) == (1, 0, 0)
    assert published["STRS"] == pytest.approx(1.0) and strict["STRS"] < 0.5


def test_cli_on_analyze_rows(tmp_path, capsys) -> None:
    ann = tmp_path / "annotations.csv"
    with ann.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["subject", "clip", "onset", "apex", "offset", "label", "kind"])
        w.writeheader()
        w.writerow({"subject": "sub01", "clip": "EP01_01", "onset": 11, "apex": 20, "offset": 41, "label": "positive", "kind": "micro"})
        w.writerow({"subject": "sub01", "clip": "EP01_01", "onset": 300, "apex": 340, "offset": 500, "label": "", "kind": "macro"})
    rows = [
        {"video": "/data/synth/sub01/EP01_01", "kind": "micro", "onset": 10, "apex": 19, "offset": 40, "label": "positive"},
        {"video": "/data/synth/sub01/EP01_01", "kind": "macro", "onset": 299, "apex": 339, "offset": 499, "label": None},
        {"video": "/data/synth/sub01/EP02_01", "kind": "micro", "onset": 10, "apex": 19, "offset": 40, "label": "negative"},
    ]
    pred = tmp_path / "events.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "strs.json"
    assert main(["--pred", str(pred), "--annotations", str(ann), "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert (rep["spotting"]["tp"], rep["spotting"]["fp"], rep["spotting"]["fn"]) == (1, 1, 0)  # frames: annotation 1-based
    assert "STRS 0.6667" in capsys.readouterr().out
    assert main(["--pred", str(tmp_path / "missing.jsonl"), "--annotations", str(ann)]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
