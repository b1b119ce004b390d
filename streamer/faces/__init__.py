"""Face detection, landmarks and alignment, shared by the streamer and the trainer's cache.

Face detectors are plugins in the `mfvan.face_detectors` registry (engine.registry: entry
points in pyproject.toml), imported only when chosen, so insightface or mediapipe are needed
only where a config names them. Why entry points rather than a scan of this folder: a scan
must import every module to learn its name, entry points list names from metadata alone, and
a detector may come from another package the same way.

A detector class has `config` (its `PluginSection`: `faces.detector: {type: NAME, ...}`), a
classmethod `from_config(section, *, threads)` returning an object whose `detect(frame_bgr)`
gives `list[Face]`, and optionally a classmethod `roi(detect, section)` returning the
detector for crops around tracked faces (None: only full-frame scans).
"""

from __future__ import annotations

from engine.registry import Registry
from streamer.faces.types import DetectorUnavailable

ENTRY_POINT_GROUP = "mfvan.face_detectors"

DETECTORS: Registry[type] = Registry("face detector", ENTRY_POINT_GROUP, unavailable=DetectorUnavailable)
