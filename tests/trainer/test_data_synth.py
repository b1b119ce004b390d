"""Synthetic corpus: local, exact, reproducible events, and the CASME II loader reads it back."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer.synth.warps import EXPRESSIONS, blink_field, expression_field, roi

pytestmark = pytest.mark.media

cv2.setNumThreads(1)


@pytest.fixture(scope="module")
def identity():
    from trainer.synth import load_identities

    (ident,) = load_identities(1)
    return ident


@pytest.mark.parametrize("label", sorted(EXPRESSIONS))
@pytest.mark.parametrize("amplitude", [1.0, 4.0, 16.0])
def test_field_peak_is_the_amplitude_and_local(identity, label: str, amplitude: float) -> None:
    box = roi(identity.landmarks, identity.image.shape[:2])
    f = expression_field(identity.landmarks, label, amplitude, box)
    mag = np.sqrt((f ** 2).sum(0))
    assert mag.max() == pytest.approx(amplitude, rel=1e-4)
    # local: at the ROI border (>= 0.9 inter-ocular distances from any landmark) nothing moves
    border = np.concatenate([mag[0], mag[-1], mag[:, 0], mag[:, -1]])
    assert border.max() == 0.0


def test_a_tearing_warp_is_refused(identity) -> None:
    box = roi(identity.landmarks, identity.image.shape[:2])
    with pytest.raises(ValueError, match="fold"):
        expression_field(identity.landmarks, "positive", 60.0, box)


def test_blink_closes_the_eye_without_folding(identity) -> None:
    box = roi(identity.landmarks, identity.image.shape[:2])
    f = blink_field(identity.landmarks, box)
    travel = np.linalg.norm(identity.landmarks[[40, 41]].mean(0) - identity.landmarks[[37, 38]].mean(0))
    assert np.sqrt((f ** 2).sum(0)).max() == pytest.approx(travel, rel=0.35)


def test_render_clip_motion_is_local_and_reproducible(identity) -> None:
    from trainer.synth import Distractors, PlannedEvent, render_clip

    still = Distractors(drift_px=0, rotation_deg=0, scale=0, noise_sigma=0, flicker=0)
    ev = PlannedEvent("micro", "positive", 10, 20, 40, 3.0)
    clip = render_clip(identity, [ev], seed=3, distractors=still)
    assert len(clip.frames) == 80 and clip.frames[0].shape == (480, 640, 3)
    diff = np.abs(clip.frames[20].astype(int) - clip.frames[10].astype(int)).max(2)
    assert diff.max() > 10  # the lip corners moved visibly at the apex
    x0, y0, x1, y1 = roi(identity.landmarks, (480, 640))
    outside = diff.copy()
    outside[y0:y1, x0:x1] = 0
    assert outside.max() == 0  # nothing outside the face region changed
    assert np.array_equal(clip.frames[10], clip.frames[0])  # curve is 0 at the onset
    # dense optical flow between onset and apex peaks near the requested 3 px
    g0 = cv2.cvtColor(clip.frames[10], cv2.COLOR_BGR2GRAY)
    g1 = cv2.cvtColor(clip.frames[20], cv2.COLOR_BGR2GRAY)
    flow = cv2.calcOpticalFlowFarneback(g0, g1, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    assert 1.5 < np.percentile(np.linalg.norm(flow, axis=2), 99.9) < 4.5
    again = render_clip(identity, [ev], seed=3)
    other = render_clip(identity, [ev], seed=4)
    assert np.array_equal(again.frames[30], render_clip(identity, [ev], seed=3).frames[30])
    assert not np.array_equal(again.frames[30], other.frames[30])
    gt = clip.ground_truth()
    assert gt["events"][0]["apex"] == 20 and gt["fps"] == 200.0


def test_plan_respects_the_brief() -> None:
    from trainer.synth.corpus import PlanOptions, plan_corpus

    plans = plan_corpus(4, 3, seed=1, opts=PlanOptions(macro_prob=1.0))
    assert plan_corpus(4, 3, seed=1, opts=PlanOptions(macro_prob=1.0)) == plans  # seeded
    for p in plans:
        evs = sorted(p.events, key=lambda e: e.onset)
        for a, b in zip(evs, evs[1:], strict=False):
            assert a.offset < b.onset  # events never overlap: each interval is exact
        assert evs[-1].offset < p.n_frames
        for e in evs:
            ms = (e.offset - e.onset) * 5.0
            assert e.onset < e.apex < e.offset
            if e.kind == "micro":
                assert 65 <= ms <= 500 and 1.0 <= e.amplitude_px <= 4.0
            elif e.kind == "macro":
                assert 800 <= ms <= 3000 and e.amplitude_px >= 6.0


def test_second_corpus_options_hold_out_identities_and_leave_the_shared_corpus_alone() -> None:
    """configs/synth-eval.yaml (issue 16): identities past the tuning ones, event-free clips,
    its own distractor ranges; the defaults still plan the shared corpus bit for bit."""
    from engine.config.loader import load_config
    from trainer.config.synth import SynthConfig
    from trainer.synth.corpus import PlanOptions, plan_corpus

    shared = plan_corpus(31, 2, seed=0, opts=PlanOptions())
    assert sum(p.n_frames for p in shared) == 45_307 and sum(e.kind == "micro" for p in shared for e in p.events) == 310
    cfg = load_config(SynthConfig, Path(__file__).resolve().parents[2] / "configs" / "synth-eval.yaml", environ={})
    opts = PlanOptions(micro_ms=cfg.micro_ms, micro_px=cfg.micro_px, drift_px=cfg.drift_px, flicker=cfg.flicker,
                       flicker_hz=cfg.flicker_hz, rotation_deg=cfg.rotation_deg, empty_clip_prob=1.0)
    plans = plan_corpus(2, 2, seed=cfg.seed, opts=opts, first_subject=cfg.first_subject)
    assert [p.subject for p in plans] == ["sub21", "sub21", "sub22", "sub22"]
    assert [p.identity_index for p in plans] == [20, 20, 21, 21]
    for p in plans:  # event-free: blinks and head motion only, about as long as a clip with events
        assert {e.kind for e in p.events} == {"blink"} and p.n_frames > 400
        assert cfg.drift_px[0] <= p.distractors.drift_px <= cfg.drift_px[1]
        assert cfg.flicker[0] <= p.distractors.flicker <= cfg.flicker[1]


def test_corpus_on_disk_reads_back_through_the_casme2_loader(tmp_path: Path) -> None:
    from trainer.datasets import LoadReport, load_casme2, load_synth
    from trainer.synth.cli import main

    cfg = tmp_path / "synth.yaml"
    cfg.write_text("micro_per_clip: 2\nmacro_prob: 1.0\nmacro_ms: [800, 820]\nblinks_per_clip: 1\n")
    out = tmp_path / "corpus"
    rc = main(["--out", str(out), "--subjects", "1", "--clips-per-subject", "1", "--seed", "7",
               "--workers", "1", "--quiet", "--config", str(cfg)])
    assert rc == 0
    report = LoadReport()
    samples = load_casme2(out, report=report)
    assert report.skipped == [] and report.repaired == []
    assert sorted(s.kind for s in samples) == ["macro", "micro", "micro"]
    assert [s.kind for s in load_synth(out)] == ["micro", "micro"]
    gt = json.loads((out / "ground_truth.jsonl").read_text().splitlines()[0])
    n = gt["n_frames"]
    for s in samples:
        assert s.subject == "sub01" and s.clip == "EP01_01" and s.fps == 200.0
        assert s.label in ("negative", "positive", "surprise")
        assert len(s.frame_paths) == n and s.frame_paths[0].name == "img1.png"
        onset, apex = cv2.imread(str(s.onset_path)), cv2.imread(str(s.apex_path))
        assert onset.shape == (480, 640, 3) and not np.array_equal(onset, apex)
    assert sum(e["kind"] == "blink" for e in gt["events"]) == 1
    # the same rows from the CSV (contract column names)
    csv_samples = load_casme2(out, annotations=out / "annotations.csv")
    assert [(s.onset, s.apex, s.offset, s.label, s.kind) for s in csv_samples] == \
        [(s.onset, s.apex, s.offset, s.label, s.kind) for s in samples]
    # contact sheet of the written clip: one row per event (2 micro, 1 macro, 1 blink), 3 tiles each
    assert main(["preview", "--corpus", str(out), "--out", str(tmp_path / "sheet.png")]) == 0
    assert cv2.imread(str(tmp_path / "sheet.png")).shape == (4 * 256, 3 * 256, 3)
    # a second run refuses to overwrite
    assert main(["--out", str(out), "--subjects", "1", "--quiet"]) == 2


def test_cli_rejects_too_many_subjects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trainer.synth.cli import main

    assert main(["--out", str(tmp_path / "x"), "--subjects", "99"]) == 2
    assert "distinct identities" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "x"), "--subjects", "12", "--first-subject", "21"]) == 2
    assert "--first-subject 21" in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    assert main(["--out", str(tmp_path / "f"), "--subjects", "1"]) == 2
    assert "not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "x"), "--subjects", "0"])
    assert exc.value.code == 2 and "subjects" in capsys.readouterr().err


def test_shipped_config_validates() -> None:
    from engine.config.loader import load_config
    from trainer.config.synth import SynthConfig

    cfg = load_config(SynthConfig, Path(__file__).resolve().parents[2] / "configs" / "synth.yaml", environ={})
    assert cfg == SynthConfig()


def test_rendered_preview_sheet(tmp_path: Path) -> None:
    from trainer.synth.cli import main

    assert main(["preview", "--out", str(tmp_path / "p.png"), "--subject", "1"]) == 0
    sheet = cv2.imread(str(tmp_path / "p.png"))
    assert sheet.shape == (6 * 256, 4 * 256, 3)
    # column 3 (warp only) is black far from the face: the corners of every row's tile
    for r in range(6):
        tile = sheet[r * 256:(r + 1) * 256, 512:768]
        assert tile[200:, :20].max() < 40 and tile[200:, -20:].max() < 40
    assert main(["preview", "--out", str(tmp_path / "q.png"), "--subject", "99"]) == 1
