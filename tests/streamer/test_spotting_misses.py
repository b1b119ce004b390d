"""The spotter's miss families (issue 16), each on a short rendered clip or the real MotionMeter,
with the old behaviour (the config of commit 3ee43dc, `OLD`) shown to miss where the new one
finds; and `mfvan-eval spot --explain` naming the cause of a miss on a real corpus folder."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from streamer.capture import Frame
from streamer.config import FacesConfig, SpotterConfig
from streamer.harness.clip import ClipEvent, render_test_clip
from streamer.pipeline import Pipeline
from streamer.spotting.evaluate import iou
from streamer.spotting.spotter import MotionMeter, is_blink

cv2.setNumThreads(1)
FPS = 200.0
# every mechanism added for issue 16 switched off: the spotter as it was
OLD = dict(motion_model="translation", after_episode="refractory", floor_prior=None, early_reference=False,
           edge_margin=0.5, min_on_shape=False, micro_min_disp=0.0, blink_mouth_ratio=0.0)
WARMUP = ClipEvent(24, 44, 70, "mouth", 2.5)  # starts 120 ms into the clip
NEIGHBOURS = [ClipEvent(120, 140, 170, "brow", 2.5), ClipEvent(182, 194, 212, "mouth", 2.5)]


def spot(frames, **spot_kw):
    pipe = Pipeline(FacesConfig(), SpotterConfig(**spot_kw), FPS, keep_crops=False, explain=True)
    events = []
    for i, f in enumerate(frames):
        events += pipe.process(Frame(i, round(i * 1e9 / FPS), f))
    return events + pipe.flush(), pipe


def found(events, truth: ClipEvent) -> bool:
    return any(e.kind == "micro" and iou((e.onset, e.offset), (truth.onset, truth.offset)) >= 0.5 for e in events)


@pytest.fixture(scope="module")
def warmup_clip():
    return render_test_clip(260, [WARMUP], FPS, seed=1, noise=1.5, drift_px=2.0, rotation_deg=0.5)


def test_an_event_in_a_tracks_first_150_ms_is_found(warmup_clip) -> None:
    """Warm-up: the floor prior and the first frame as reference; before, nothing could fire
    for k + warm-up frames (~0.5 s)."""
    assert not found(spot(warmup_clip, **OLD)[0], WARMUP)
    events, _ = spot(warmup_clip)
    assert found(events, WARMUP), [(e.kind, e.onset, e.offset) for e in events]


def test_a_neighbour_right_after_an_episode_is_found() -> None:
    """Refractory: the second event starts 60 ms after the first ends, inside the old k-frame
    refractory period; compared with the neutral frame the first returned to, it is seen."""
    frames = render_test_clip(330, NEIGHBOURS, FPS, seed=2, noise=1.5, drift_px=2.0, rotation_deg=0.5)
    old, _ = spot(frames, **OLD)
    assert found(old, NEIGHBOURS[0]) and not found(old, NEIGHBOURS[1])
    events, _ = spot(frames)
    assert all(found(events, t) for t in NEIGHBOURS), [(e.kind, e.onset, e.offset) for e in events]


def test_an_event_right_after_a_track_re_anchor_is_found() -> None:
    """Re-anchor: the camera is bumped (the whole frame jumps 60 px), the tracker loses the
    face and re-anchors it on the next detection, which breaks continuity. An event starting 30 ms
    after the bump and lasting 130 ms lies wholly inside the k frames the old spotter waited after
    a break (it then compared two neutral frames and saw nothing); the new one compares with the
    re-anchored track's first frame and finds it. The break itself is counted and recorded."""
    jump = 150
    event = ClipEvent(jump + 6, jump + 18, jump + 32, "mouth", 2.5)
    frames = render_test_clip(jump + 120, [ClipEvent(40, 55, 75, "brow", 2.5), event], FPS, seed=3, noise=1.5,
                              drift_px=1.0, rotation_deg=0.3)
    bump = np.float32([[1, 0, 60], [0, 1, 20]])
    frames = frames[:jump] + [cv2.warpAffine(f, bump, (640, 480), borderMode=cv2.BORDER_REPLICATE)
                              for f in frames[jump:]]
    old, _ = spot(frames, **OLD)
    assert not found(old, event)
    events, pipe = spot(frames)
    (sp,) = pipe.spotters.values()
    assert pipe.counters()["reanchors"] >= 1 and ("reanchor" in {why for _, why in sp.breaks}), sp.breaks
    assert found(events, event), [(e.kind, e.onset, e.offset) for e in events]


def test_a_micro_event_right_after_a_macro_expression_is_micro() -> None:
    """Micro/macro decision next to a macro-expression: a 170 ms brow event starting 60 ms after
    a 700 ms, 8 px smile has returned was lost to the old k-frame refractory period (switching only
    `after_episode` back to `refractory` loses it); now the smile is macro and the event micro."""
    smile = ClipEvent(60, 110, 200, "mouth", 8.0)
    event = ClipEvent(212, 226, 246, "brow", 2.5)
    frames = render_test_clip(event.offset + 90, [smile, event], FPS, seed=4, noise=1.5, drift_px=1.0,
                              rotation_deg=0.3)
    old, _ = spot(frames, **OLD)
    assert not found(old, event)
    events, _ = spot(frames)
    assert found(events, event), [(e.kind, e.onset, e.offset) for e in events]
    assert [e.kind for e in events if e.onset < smile.offset] == ["macro"]


def test_residual_head_rotation_is_not_expression_motion() -> None:
    """Never triggered / weak on a moving head: a residual rotation of the aligned crop moves
    the left and right ROIs in opposite directions; a median translation leaves it in, the
    median similarity removes it, so the floor stays low and subtle events clear it."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (112, 112), dtype=np.uint8), (0, 0), 2.0)
    img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)
    rot = cv2.warpAffine(img, cv2.getRotationMatrix2D((55.5, 65.5), 1.0, 1.0), (112, 112),
                         borderMode=cv2.BORDER_REFLECT)
    translation = MotionMeter(112).measure_rois(img, rot).max()
    similarity = MotionMeter(112, rigid=True).measure_rois(img, rot).max()
    assert translation > 0.3 and similarity < translation / 3, (translation, similarity)
    # a local movement (one brow up 1 px) survives the similarity removal
    moved = img.copy()
    moved[26:44, 22:52] = img[27:45, 22:52]
    assert MotionMeter(112, rigid=True).measure_rois(img, moved)[0] > 0.2


def test_blink_seen_mostly_in_one_eye_is_a_blink() -> None:
    """Blinks the both-eyes rule let through as micro events (ROI motions at the apex, order
    brow_l, brow_r, eye_l, eye_r, mouth_l, mouth_r, taken from the tuning corpus)."""
    one_eye = np.array([0.11, 0.07, 0.15, 0.38, 0.06, 0.06], np.float32)
    assert not is_blink(one_eye, mouth_ratio=0) and is_blink(one_eye)
    brows_only = np.array([0.33, 0.33, 0.12, 0.12, 0.02, 0.04], np.float32)  # AU1+2 alone
    surprise = np.array([0.21, 0.94, 0.48, 0.81, 0.17, 0.17], np.float32)  # brows lead the lids
    smile = np.array([0.05, 0.05, 0.10, 0.12, 0.45, 0.40], np.float32)
    assert not any(is_blink(v) for v in (brows_only, surprise, smile))


def test_eval_spot_explain_names_the_cause(tmp_path, warmup_clip) -> None:
    """`mfvan-eval spot --explain` on a CASME II-layout folder: the old config misses the
    early event and says why (warm-up), in the table and in --out JSON; the default finds it."""
    from streamer.spotting.evaluate import main

    clip = tmp_path / "sub01" / "EP01_01"
    clip.mkdir(parents=True)
    for i, f in enumerate(warmup_clip):
        cv2.imwrite(str(clip / f"img{i + 1}.png"), f, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    ann = tmp_path / "annotations.csv"
    with open(ann, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject", "clip", "onset", "apex", "offset", "kind"])
        w.writerow(["01", "EP01_01", WARMUP.onset + 1, WARMUP.apex + 1, WARMUP.offset + 1, "micro"])
    old_cfg = tmp_path / "old.yaml"
    old_cfg.write_text("spotter:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in OLD.items()))
    out = tmp_path / "old.json"
    assert main(["--root", str(tmp_path), "--annotations", str(ann), "--explain", "--out", str(out),
                 "--config", str(old_cfg)]) == 0
    res = json.loads(out.read_text())
    assert res["scores"]["micro"]["tp"] == 0 and res["miss_causes"]["micro"] == {"warm-up": 1}
    (miss,) = res["per_clip"][str(clip)]["misses"]
    assert miss["track_state"] == "tracked" and miss["states"].get("warming", 0) > 0
    out = tmp_path / "new.json"
    assert main(["--root", str(tmp_path), "--annotations", str(ann), "--explain", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["scores"]["micro"]["tp"] == 1 and res["miss_causes"]["micro"] == {}
