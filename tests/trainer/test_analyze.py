"""mfvan-analyze on the demo's synthetic clip (streamer.harness.clip, a real face with known
micro events): the daemon's spotter, crops and the bundled artefact through ONNX Runtime give
labelled rows where the events are, a timeline PNG and heatmap PNGs; bad input is one line and
exit 2."""

from __future__ import annotations

import csv
import json

import cv2
import pytest

from streamer.analyze import main
from streamer.harness.clip import ClipEvent, render_test_clip, write_folder
from streamer.spotting.evaluate import iou

FPS = 200.0
MICRO = [ClipEvent(200, 230, 262, "brow", 2.5), ClipEvent(380, 412, 445, "mouth", 2.5)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip") / "frames"
    write_folder(render_test_clip(600, MICRO, FPS, seed=3, noise=1.5), folder, ".png")
    return folder


def test_labelled_events_timeline_and_heatmaps(clip, tmp_path) -> None:
    out, timeline, heat = tmp_path / "events.jsonl", tmp_path / "timeline.png", tmp_path / "heat"
    rc = main(["--video", str(clip), "--out", str(out), "--timeline", str(timeline), "--heatmaps", str(heat), "--quiet"])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    micro = [r for r in rows if r["kind"] == "micro"]
    for truth in MICRO:
        best = max((iou((r["onset"], r["offset"]), (truth.onset, truth.offset)) for r in micro), default=0.0)
        assert best >= 0.5, (truth, rows)
    for r in micro:
        probs = [r[k] for k in ("p_negative", "p_positive", "p_surprise")]
        assert r["label"] in ("negative", "positive", "surprise")
        assert abs(sum(probs) - 1.0) < 1e-3 and max(probs) == r[f"p_{r['label']}"]
        assert r["onset"] <= r["apex"] <= r["offset"]
        assert r["apex_s"] == pytest.approx(r["apex"] / FPS, abs=1e-3)
    img = cv2.imread(str(timeline))
    assert img is not None and img.shape[1] > 600
    pngs = sorted(heat.glob("*.png"))
    assert len(pngs) == len(micro) and cv2.imread(str(pngs[0])).shape[1] == 112 * 5


def test_csv_table(clip, tmp_path) -> None:
    out = tmp_path / "events.csv"
    assert main(["--video", str(clip), "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows and {"onset_s", "apex_s", "offset_s", "label", "p_surprise"} <= set(rows[0])


@pytest.mark.parametrize("args, needle", [
    (["--video", "/nonexistent/clip.mp4", "--out", "x.jsonl"], "nonexistent"),
    (["--video", ".", "--out", "events.txt"], ".jsonl or .csv"),
    (["--video", ".", "--out", "e.jsonl", "--artefact", "/nonexistent/artefact"], "manifest"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err
