"""68-point landmarks from dlib's shape predictor, seeded by RetinaFace boxes.

The predictor file ships in the `face-recognition-models` wheel. We locate it with
`importlib.util.find_spec` instead of importing the package because its `__init__` imports
`pkg_resources`, which setuptools >= 81 no longer provides.

Licence note: `shape_predictor_68_face_landmarks.dat` was trained on the iBUG 300-W data set,
whose terms exclude commercial use. The synthetic corpus uses it only to place warp handles;
anyone shipping a product built on these landmarks must check those terms.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

# 68-point index groups (iBUG 300-W numbering, 0-based).
JAW = list(range(0, 17))
BROW_L = list(range(17, 22))  # image-left brow (subject's right)
BROW_R = list(range(22, 27))
NOSE = list(range(27, 36))
EYE_L = list(range(36, 42))
EYE_R = list(range(42, 48))
MOUTH_OUT = list(range(48, 60))
MOUTH_IN = list(range(60, 68))


class LandmarkError(RuntimeError):
    """The landmark model is missing or could not fit a face."""


def predictor_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise LandmarkError("face-recognition-models is not installed (pip install -e '.[train]')")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.exists():
        raise LandmarkError(f"{path} is missing; reinstall face-recognition-models")
    return path


@lru_cache(maxsize=1)
def _predictor():
    import dlib

    return dlib.shape_predictor(str(predictor_path()))


def fit68(image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(68, 2) float32 landmarks of the face in `box` (x0, y0, x1, y1).

    RetinaFace boxes include more forehead than dlib's HOG boxes the predictor was trained
    with; shrinking the top by 15 % brings them close enough for a stable fit.
    """
    import dlib

    x0, y0, x1, y1 = (float(v) for v in box)
    h = y1 - y0
    rect = dlib.rectangle(int(round(x0)), int(round(y0 + 0.15 * h)), int(round(x1)), int(round(y1)))
    gray = image_bgr if image_bgr.ndim == 2 else image_bgr[..., ::-1]  # dlib wants RGB or gray
    shape = _predictor()(np.ascontiguousarray(gray), rect)
    pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float32)
    if not np.isfinite(pts).all():
        raise LandmarkError("landmark fit failed")
    return pts
