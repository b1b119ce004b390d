"""Aligned-crop cache: built once with the streamer's face code, reused on rerun."""

from __future__ import annotations

import os
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


def test_build_then_reuse_then_rebuild_on_change(corpus: Path, tmp_path: Path) -> None:
    from trainer.datasets import load_synth
    from trainer.preprocess import CacheOptions, CacheReport, build_cache, load_crops

    samples = load_synth(corpus)
    assert len(samples) == 2
    first = CacheReport()
    paths = build_cache(samples, tmp_path, progress=False, report=first)
    assert (first.built, first.reused, first.failed) == (2, 0, [])
    crops = load_crops(paths[samples[0].key])
    assert crops["onset"].shape == (112, 112, 3) and crops["onset"].dtype == np.uint8
    assert not np.array_equal(crops["onset"], crops["apex"])
    # the crop is a face: the five landmarks land near the template's eye row
    m, lm = crops["matrix"], crops["landmarks5"]
    eyes = (m[:, :2] @ lm[:2].T).T + m[:, 2]
    assert np.all(np.abs(eyes[:, 1] - 51.6) < 6)
    mtimes = {p: p.stat().st_mtime_ns for p in paths.values()}
    second = CacheReport()
    assert build_cache(samples, tmp_path, progress=False, report=second) == paths
    assert (second.built, second.reused) == (0, 2)
    assert {p: p.stat().st_mtime_ns for p in paths.values()} == mtimes
    # an input frame changes -> that sample is rebuilt under a new name
    apex = samples[0].apex_path
    img = cv2.imread(str(apex))
    cv2.imwrite(str(apex), img)
    os.utime(apex, ns=(0, apex.stat().st_mtime_ns + 10**9))
    third = CacheReport()
    again = build_cache(samples, tmp_path, progress=False, report=third)
    assert (third.built, third.reused) == (1, 1) and again[samples[0].key] != paths[samples[0].key]
    # frames onset..offset on request
    opts = CacheOptions(frames=True, every=2)
    with_frames = load_crops(build_cache(samples[1:], tmp_path, opts, progress=False)[samples[1].key])
    n = len(range(samples[1].onset, samples[1].offset + 1, 2))
    assert with_frames["frames"].shape == (n, 112, 112, 3)


def test_faceless_sample_is_reported_not_fatal(corpus: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from trainer.datasets import load_synth
    from trainer.preprocess import CacheReport, build_cache

    s = load_synth(corpus)[0]
    blank_dir = tmp_path / "blank"
    blank_dir.mkdir()
    for n in range(1, 4):
        cv2.imwrite(str(blank_dir / f"img{n}.png"), np.zeros((480, 640, 3), np.uint8))
    bad = replace(s, clip="blank", onset=1, apex=2, offset=3, frame_paths=tuple(sorted(blank_dir.iterdir())))
    report = CacheReport()
    out = build_cache([bad, s], tmp_path / "c", progress=False, report=report)
    assert list(out) == [s.key] and report.built == 1 and "no face" in report.failed[0]


def test_cli_fills_the_cache(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trainer.preprocess.__main__ import main

    argv = ["--dataset", "synth", "--data", str(corpus), "--cache", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    assert "2 built, 0 reused" in capsys.readouterr().out
    assert main(argv) == 0
    assert "0 built, 2 reused" in capsys.readouterr().out
