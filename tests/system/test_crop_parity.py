"""One crop path: the Pair the daemon sends for an event equals the pair the training path builds
for the same event from the same clip (same shape and colour order, ≥ 99 % of pixels within 2
grey levels). The daemon is the real `mfvan-streamd --video` with its streamer process; the test
is the engine: a real PULL socket receives the Pair bytes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from engine.wire.protocol import Pair, decode
from streamer.harness.clip import ClipEvent, render_test_clip, write_folder

BIN = Path(sys.executable).parent
# a clip with slow head drift and a little rotation, so the tracker really has to follow the face
MICRO = [ClipEvent(160, 190, 220, "brow", 2.5), ClipEvent(330, 362, 395, "mouth", 2.5)]
LABELS = ["negative", "positive", "surprise"]


def close_enough(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixel values within 2 grey levels."""
    return float((np.abs(a.astype(np.int16) - b.astype(np.int16)) <= 2).mean())


@pytest.fixture(scope="module")
def sent(tmp_path_factory) -> tuple[Path, list[tuple[Pair, np.ndarray, np.ndarray]]]:
    tmp = tmp_path_factory.mktemp("parity")
    clip = tmp / "clip200"
    write_folder(render_test_clip(480, MICRO, 200.0, seed=5, noise=1.5, drift_px=6.0, rotation_deg=2.0), clip, ".bmp")
    cfg = tmp / "streamd.yaml"
    cfg.write_text("supervisor:\n  metrics_port: 0\n  linger_s: 0.5\n  stop_timeout_s: 10\n")
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"ipc://{tmp}/pairs")
    proc = subprocess.Popen([str(BIN / "mfvan-streamd"), "--video", str(clip), "--fps", "200", "--engine",
                             f"ipc://{tmp}/pairs", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pairs = []
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and (proc.poll() is None or pull.poll(0)):
            if pull.poll(200):
                _, header, arrays = decode(pull.recv_multipart())
                if isinstance(header, Pair):
                    pairs.append((header, arrays[0].copy(), arrays[1].copy()))
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.stdout.read()
        pull.close(0)
        ctx.term()
    assert rc == 0, out[-3000:]
    assert len(pairs) == len(MICRO), out[-3000:]
    return clip, pairs


def training_pairs(clip: Path, pairs: list[tuple[Pair, np.ndarray, np.ndarray]]):
    """The same events through the training path (`trainer.train.crops.build_pairs`)."""
    from trainer.datasets.sample import Sample
    from trainer.train.crops import build_pairs

    frames = tuple(sorted(clip.iterdir(), key=lambda p: int(p.stem[3:])))
    samples = [Sample("sub01", clip.name, h.onset_index + 1, h.apex_index + 1, h.offset_index + 1,  # imgN: N from 1
                      LABELS[0], frames, 200.0) for h, _, _ in pairs]
    built, skipped = build_pairs(samples, LABELS, int(pairs[0][1].shape[0]), None, progress=False)
    assert skipped == []
    return built


def test_training_pairs_equal_the_pairs_the_daemon_sends(sent) -> None:
    clip, pairs = sent
    built = training_pairs(clip, pairs)
    for i, (h, onset, apex) in enumerate(pairs):
        assert h.crop.shape == (112, 112, 3) and h.crop.dtype == "uint8"
        for wire, ours in ((onset, built.onset[i]), (apex, built.apex[i])):
            assert ours.shape == wire.shape and ours.dtype == wire.dtype
            assert close_enough(ours, wire) >= 0.99, (h.onset_index, h.apex_index, close_enough(ours, wire))
            # colour order: the same channel order as the wire (BGR), not merely close in grey
            assert close_enough(ours[..., ::-1], wire) < 0.9
        # and the event is there: the apex differs from the onset on both sides
        assert close_enough(built.onset[i], built.apex[i]) < 0.999


def test_calibration_pairs_from_the_clip_equal_the_wire_pairs(sent) -> None:
    """Calibration's clip → pairs goes through the same streamer function."""
    from calibration.pairs import ClipPair, from_clips

    clip, pairs = sent
    frames = tuple(sorted(clip.iterdir(), key=lambda p: int(p.stem[3:])))
    events = [ClipPair(frames, h.onset_index, h.apex_index, LABELS[1], "sub01") for h, _, _ in pairs]
    got, skipped = from_clips(events, 112, LABELS)
    assert skipped == [] and got.labelled
    for i, (_, onset, apex) in enumerate(pairs):
        assert close_enough(got.onset[i], onset) >= 0.99 and close_enough(got.apex[i], apex) >= 0.99
