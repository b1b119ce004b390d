"""Training crops: the streamer's one crop path (daemon tracker replayed from the clip start),
BGR wire crops, cached as .npz and reused, failures listed not fatal, one tensor conversion."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.media


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.synth.corpus import PlanOptions, make_corpus

    out = tmp_path_factory.mktemp("synth")
    opts = PlanOptions(micro_per_clip=2, macro_prob=0.0, blinks_per_clip=0, micro_ms=(65, 120))
    make_corpus(out, 1, 1, seed=2, opts=opts, workers=1, progress=False)
    return out


def test_build_pairs_are_the_streamer_crops_cached_and_reused(corpus: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from streamer.crops import clip_crops
    from trainer.datasets import load_synth
    from trainer.train import crops as tc

    samples = load_synth(corpus)
    assert len(samples) == 2
    pairs, skipped = tc.build_pairs(samples, ["negative", "positive", "surprise"], 112, tmp_path, extra_frames=2,
                                    progress=False)
    assert skipped == [] and len(pairs) == 2 and pairs.onset.shape == (2, 112, 112, 3) and pairs.onset.dtype == np.uint8
    assert not np.array_equal(pairs.onset[0], pairs.apex[0])
    assert len(pairs.frames) == 4 and sorted(set(pairs.frame_owner.tolist())) == [0, 1]
    # exactly the streamer function's crops, BGR, for both events of the one clip
    s = samples[1]
    pos = tc.Cropper(112, None, 2).positions(s)
    (direct,) = clip_crops(s.frame_paths, [pos], fps=s.fps)
    np.testing.assert_array_equal(pairs.onset[1], direct.crops[0])
    np.testing.assert_array_equal(pairs.apex[1], direct.crops[-1])
    np.testing.assert_array_equal(pairs.sequence(1), np.stack(direct.crops))
    files = sorted(tmp_path.glob("*.npz"))
    assert len(files) == 2
    with np.load(files[0], allow_pickle=False) as z:
        assert set(z.files) == {"onset", "apex", "frames"}
    # a rerun reads the cache: no clip is replayed
    monkeypatch.setattr(tc, "clip_crops", lambda *a, **k: pytest.fail("replayed a cached clip"))
    again, _ = tc.build_pairs(samples, ["negative", "positive", "surprise"], 112, tmp_path, extra_frames=2, progress=False)
    np.testing.assert_array_equal(again.apex, pairs.apex)
    # other face settings are another cache entry
    from streamer.config import FacesConfig

    other = tc.Cropper(112, tmp_path, 2, FacesConfig(detect_every=5))
    assert other.key(s) != tc.Cropper(112, tmp_path, 2).key(s)


def test_faceless_and_unlabelled_samples_are_reported_not_fatal(corpus: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from trainer.datasets import load_synth
    from trainer.train.crops import build_pairs

    s = load_synth(corpus)[0]
    blank_dir = tmp_path / "blank"
    blank_dir.mkdir()
    for n in range(1, 4):
        cv2.imwrite(str(blank_dir / f"img{n}.png"), np.zeros((480, 640, 3), np.uint8))
    bad = replace(s, clip="blank", onset=1, apex=2, offset=3, frame_paths=tuple(sorted(blank_dir.iterdir())))
    odd = replace(s, clip="odd", label="contempt")
    pairs, skipped = build_pairs([bad, odd, s], ["negative", "positive", "surprise"], 64, tmp_path / "c", progress=False)
    assert len(pairs) == 1 and pairs.crop_size == 64 and list(pairs.subjects) == [s.subject]
    assert len(skipped) == 2 and any("no face tracked" in x for x in skipped) and any("contempt" in x for x in skipped)


def test_frame_numbers_map_to_positions() -> None:
    from trainer.train.crops import CropError, frame_positions

    paths = [Path(f"/c/img{n}.jpg") for n in (46, 47, 48, 50)]
    assert frame_positions(paths, [46, 50]) == [0, 3]
    assert frame_positions([Path("/c/a.png"), Path("/c/b.png")], [0, 1]) == [0, 1]  # loaders that give positions
    with pytest.raises(CropError, match="neither"):
        frame_positions(paths, [49])


def test_training_tensor_is_the_engine_conversion() -> None:
    """One conversion to tensors: the trainer's to_tensor is engine.tensors.crops_to_nchw (BGR → RGB)."""
    torch = pytest.importorskip("torch")
    from engine.tensors import crops_to_nchw
    from trainer.train.data import to_tensor

    batch = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    batch[..., 0] = 255  # pure blue in BGR
    batch[..., 2] = 0
    t = to_tensor(batch)
    assert t.dtype == torch.float32 and t.shape == (3, 3, 16, 16)
    np.testing.assert_array_equal(t.numpy(), crops_to_nchw(batch))
    assert float(t[:, 2].min()) == 1.0 and float(t[:, 0].max()) == 0.0  # channel 0 of the network input is red
