"""The spotter on rendered clips of a real face with known events (streamer.harness.clip):
micro events found where they are with IoU >= 0.5, a macro-expression reported as macro, no
second peak on the return to neutral, head drift/rotation alone fires nothing, a sensor gap
invalidates the window across it, the noise floor survives dense events."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamer.capture import Frame
from streamer.config import FacesConfig, SpotterConfig
from streamer.harness.clip import ClipEvent, render_test_clip
from streamer.pipeline import Pipeline
from streamer.spotting.evaluate import iou
from streamer.spotting.noise import NoiseFloor, published_threshold, robust_floor

cv2.setNumThreads(1)
FPS = 200.0
MICRO = [ClipEvent(240, 270, 300, "brow", 2.5), ClipEvent(420, 452, 485, "mouth", 2.5)]
MACRO = ClipEvent(600, 660, 860, "mouth", 6.0, "macro")


def spot(frames, gap_at: int | None = None, **spot_kw):
    pipe = Pipeline(FacesConfig(), SpotterConfig(**spot_kw), FPS)
    events = []
    for i, f in enumerate(frames):
        ts = round(i * 1e9 / FPS) + (50_000_000 if gap_at is not None and i >= gap_at else 0)
        events += pipe.process(Frame(i, ts, f, gap_before=(i == gap_at)))
    return events + pipe.flush(), pipe


@pytest.fixture(scope="module")
def clip():
    return render_test_clip(1000, [*MICRO, MACRO], FPS, seed=3, noise=1.5, drift_px=3.0, rotation_deg=1.0)


@pytest.fixture(scope="module")
def spotted(clip):
    return spot(clip)


def test_micro_events_found_with_iou_and_crops(spotted) -> None:
    events, pipe = spotted
    micro = [e for e in events if e.kind == "micro"]
    for truth in MICRO:
        best = max((iou((e.onset, e.offset), (truth.onset, truth.offset)) for e in micro), default=0.0)
        assert best >= 0.5, (truth, [(e.onset, e.apex, e.offset) for e in micro])
    for e in micro:
        assert e.onset <= e.apex <= e.offset
        assert e.onset_crop.shape == e.apex_crop.shape == (112, 112, 3) and e.apex_crop.dtype == np.uint8
        assert 65 <= e.duration_ms <= 500
    assert len(pipe.spotters) == 1  # one face, one stable track id


def test_macro_expression_is_macro_not_micro(spotted) -> None:
    events, _ = spotted
    inside = [e for e in events if e.apex >= MACRO.onset and e.onset <= MACRO.offset]
    assert inside and all(e.kind == "macro" for e in inside), [(e.kind, e.onset, e.offset) for e in inside]
    best = max(iou((e.onset, e.offset), (MACRO.onset, MACRO.offset)) for e in inside)
    assert best >= 0.5


def test_no_second_peak_after_return_to_neutral(spotted) -> None:
    events, _ = spotted
    # the one-sided difference would fire again k frames after each event, in the neutral gap
    k = round(185 * FPS / 1000)
    for truth in MICRO:
        echoes = [e for e in events if truth.offset < e.apex <= truth.offset + k + 20]
        assert not echoes, [(e.onset, e.apex, e.offset) for e in echoes]
    assert len(events) == 3


def test_head_motion_alone_fires_nothing() -> None:
    frames = render_test_clip(700, [], FPS, seed=5, noise=2.0, drift_px=5.0, rotation_deg=1.5)
    events, pipe = spot(frames)
    assert events == [], [(e.kind, e.onset, e.offset, e.score) for e in events]
    assert pipe.counters()["flows"] > 600  # it really measured every frame


def test_a_sensor_gap_inside_an_event_invalidates_it(clip) -> None:
    events, pipe = spot(clip[:560], gap_at=MICRO[1].apex)
    assert not [e for e in events if e.onset <= MICRO[1].apex <= e.offset]
    c = pipe.counters()
    assert c["breaks"] == 1
    assert any(iou((e.onset, e.offset), (MICRO[0].onset, MICRO[0].offset)) >= 0.5 for e in events)


def test_published_rule_offline_option(clip) -> None:
    from streamer.config import StreamdConfig
    from streamer.spotting.noise import published_threshold as rule

    pipe = Pipeline(FacesConfig(), SpotterConfig(), FPS, fixed_thresholds={}, record=True, keep_crops=False)
    for i, f in enumerate(clip[:560]):
        assert pipe.process(Frame(i, round(i * 5e6), f)) == []  # threshold inf: records only
    a = np.array([v for _, v in pipe.spotters[0].a_series])
    thr = rule(a, StreamdConfig().spotter.published_p)
    assert a.mean() < thr < a.max()


def test_noise_floor_is_robust_to_dense_events() -> None:
    rng = np.random.default_rng(0)
    quiet = np.abs(rng.normal(0.02, 0.005, 600))
    clean = NoiseFloor(6.0, window=2000, warmup=10)
    for v in quiet:
        clean.add(v)
    busy = NoiseFloor(6.0, window=2000, warmup=10)
    mix = np.concatenate([quiet, rng.uniform(0.2, 0.6, 400)])  # 40 % of the frames are events
    for v in rng.permutation(mix):
        busy.add(v)
    assert clean.threshold < 0.1 and busy.threshold < 0.15  # events (>= 0.2) still fire
    med, mad = robust_floor(quiet)
    assert abs(med - np.median(quiet)) < 0.003 and 0.5 < mad / np.median(np.abs(quiet - np.median(quiet))) < 2
    assert published_threshold(np.array([1.0, 1.0, 3.0]), 0.5) == pytest.approx(1 + 2 / 3 + 0.5 * (3 - 5 / 3))


def test_a_long_restless_tail_keeps_the_micro_events_crops_and_bounds_memory() -> None:
    """A micro event followed by restless small motion (twitches every 60 ms) keeps its
    episode open for ~2 s, far past the crop ring; the event must still carry its onset and
    apex crops, and the open episode must not hold more than two micro-spans of crops."""
    main = ClipEvent(150, 180, 210, "brow", 2.5)
    twitches = [ClipEvent(200 + 12 * j, 206 + 12 * j, 212 + 12 * j, "mouth", 1.0) for j in range(25)]
    frames = render_test_clip(700, [main, *twitches], FPS, seed=5, noise=1.5)
    pipe = Pipeline(FacesConfig(), SpotterConfig(), FPS)
    events, longest, most_crops = [], 0, 0
    for i, f in enumerate(frames):
        events += pipe.process(Frame(i, round(i * 1e9 / FPS), f))
        for sp in pipe.spotters.values():
            if sp.episode is not None:
                longest = max(longest, len(sp.episode["slots"]))
                most_crops = max(most_crops, sum(s.bgr is not None for s in sp.episode["slots"]))
    events += pipe.flush()
    sp = next(iter(pipe.spotters.values()))
    assert longest > 2 * sp.ring_len, "the scenario must keep one episode open past the crop ring"
    micro = [e for e in events if e.kind == "micro"]
    assert any(iou((e.onset, e.offset), (main.onset, main.offset)) >= 0.5 for e in micro), events
    for e in micro:
        assert e.onset_crop is not None and e.apex_crop is not None and e.onset_crop.shape == (112, 112, 3)
    assert most_crops <= 2 * (sp.micro_span + 2)


def test_fast_median_is_numpys_median_bit_for_bit() -> None:
    """The meter's median of the face's flow (its hot path) must equal np.median exactly: the
    spotter's thresholds were tuned on np.median's output, odd and even sample counts alike."""
    from streamer.spotting.spotter import _median2

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4, 675, 676, 900):
        for _ in range(40):
            x = (rng.normal(size=(n, 2)) * rng.uniform(0.01, 5)).astype(np.float32)
            assert np.array_equal(_median2(x), np.median(x, axis=0))
    flow = rng.normal(size=(112, 112, 2)).astype(np.float32)
    strided = flow[24:108:3, 18:94:3].reshape(-1, 2)  # the meter's own sampling: not contiguous
    assert np.array_equal(_median2(strided), np.median(strided, axis=0))
