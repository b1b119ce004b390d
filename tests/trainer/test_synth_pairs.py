"""Pair-level rendering (trainer/synth/pairs.py) on real registry identities: the daemon's crop
geometry, balanced labels, seeded determinism, motion only where the event is, generator B
differs from A, and the CLI's one-line errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from streamer.crops import face_crop
from trainer.synth.identities import SPECS, place
from trainer.synth.pairs import PairOptions, main, make_pairs, prepare, render_event

QUIET = PairOptions(crop_size=48, events_per_identity=6, noise_sigma=(0.0, 0.0), blur_prob=0.0, jpeg_prob=0.0,
                    gamma=(1.0, 1.0), flicker=0.0, misalign_px=0.0, misalign_deg=0.0, misalign_scale=0.0,
                    landmark_error_px=0.0, onset_jitter=0)


@pytest.fixture(scope="module")
def identities():
    return [place(SPECS[0]), place(SPECS[1])]


def test_crop_geometry_is_the_daemons(identities) -> None:
    face = prepare(identities[:1])[0]
    crops, info = render_event(face, "positive", np.random.default_rng(0), QUIET)
    # no nuisance, onset at the true onset: the onset crop IS the daemon's crop of the neutral frame
    np.testing.assert_array_equal(crops[0], face_crop(identities[0].image, face.lm5, 48))
    assert info["onset_fraction"] == 0.0 and 0 < info["apex_fraction"] <= 1
    moved = np.abs(crops[-1].astype(int) - crops[0].astype(int)).sum(2)
    assert moved.max() > 10  # the expression shows
    assert moved[40:, :].sum() > moved[:8, :].sum()  # positive: lips and cheeks, not the forehead


def test_balanced_seeded_and_generator_b_differs(identities) -> None:
    opts = replace(PairOptions(crop_size=48, events_per_identity=6, mid_frames=1))
    a, infos = make_pairs(identities, opts, seed=3, workers=1, progress=False)
    again, _ = make_pairs(identities, opts, seed=3, workers=1, progress=False)
    assert len(a) == 12 and a.subject_list() == ["sub01", "sub02"] and len(infos) == 12
    assert np.bincount(a.labels).tolist() == [4, 4, 4] and a.onset.shape == (12, 48, 48, 3)
    assert a.frames.shape == (12, 48, 48, 3) and a.frame_owner.tolist() == list(range(12))
    np.testing.assert_array_equal(a.apex, again.apex)
    b, _ = make_pairs(identities, replace(opts, generator="B", amplitude_law="uniform"), seed=3, workers=1, progress=False)
    assert not np.array_equal(a.apex, b.apex) and b.clips[0].startswith("sub01/B")


def test_cli_rejects_bad_arguments(tmp_path, capsys) -> None:
    assert main(["--out", str(tmp_path / "x.npz"), "--first-subject", "30", "--subjects", "5"]) == 2
    assert "outside" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "x.npz"), "--crop-size", "50"]) == 2
