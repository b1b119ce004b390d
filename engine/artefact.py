"""The engine artefact: a folder of model files plus `manifest.json`, verified before serving.

Why a manifest with hashes: an engine that silently serves a half-copied or mismatched model
publishes confident wrong labels. Every file the manifest lists is hashed at build time and
re-hashed at load; any difference, a missing file, or an input spec the server cannot feed
fails at start with a message that says how to rebuild. The manifest also carries what the
server needs without torch: labels, input spec and normalisation, heatmap names.

The identity an engine publishes (`Artefact.identity`, in every Result's `model_sha`) hashes
the model file *and* what the manifest says it means (labels in output order, input and output
spec): two labels swapped in `manifest.json` are a different model to a subscriber, and were
served silently under the genuine model's sha before.

Torch-free on purpose (engine-only hosts load artefacts with numpy + onnxruntime).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from engine.wire.protocol import MAX_FRAMES, MAX_LABELS

FORMAT = "mfvan-engine/1"
MANIFEST = "manifest.json"
ONNX_FP32 = "model.onnx"
ONNX_OPT = "model.opt.onnx"
ONNX_INT8 = "model.int8.onnx"
CHECKPOINT = "model.ckpt"
CALIB_REPORT = "calibration_report.json"
TIMING_CACHE = "timing.cache"
DEMO_DIR = Path(__file__).resolve().parent / "assets" / "demo"
MAX_MANIFEST_BYTES = 4 << 20

# a label or heatmap name travels in every Result (probs keys) and Status: 64 characters at most
# (32 KB labels made every Result too big for every subscriber), printable, no '/'
Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f/]+$")]

Precision = Literal["fp32", "fp16", "int8"]
Role = Literal["onnx", "onnx-optimised", "onnx-qdq", "checkpoint", "tensorrt-plan", "report", "cache"]


def rebuild_hint(artefact: str | os.PathLike[str] = "DIR") -> str:
    return (
        "rebuild it with `mfvan-build-engine --checkpoint CKPT --backend onnxruntime "
        f"--out {artefact}` (add `--precision int8 --calib PAIRS` for INT8)"
    )


class ArtefactError(RuntimeError):
    """The artefact cannot be served; the message names the problem and how to rebuild."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """What the network takes, and how the server turns wire crops into it."""

    names: tuple[str, str] = ("onset", "apex")
    layout: Literal["NCHW"] = "NCHW"
    dtype: Literal["float32"] = "float32"
    channels: Literal["RGB"] = "RGB"
    crop_size: int = Field(ge=8, le=4096)
    scale: float = 1.0 / 255.0  # network input = uint8 * scale; any mean/std is inside the model
    wire: str = "aligned BGR uint8 (S, S, 3) crops, converted to RGB float [0,1] NCHW by the engine"
    max_batch: int = Field(ge=1)


class OutputSpec(_Strict):
    names: tuple[str, str] = ("probs", "heatmaps")
    num_classes: int = Field(ge=2)
    heatmap_names: tuple[Name, ...] = Field(("fused", "scale1", "scale2", "scale3"), max_length=MAX_FRAMES)
    heatmap_grid: int = Field(ge=1)


class FileEntry(_Strict):
    role: Role
    sha256: str
    bytes: int
    precision: Precision | None = None


class TensorRTInfo(_Strict):
    version: str
    gpu: str
    compute_capability: str
    plan: str
    max_batch: int
    precision: Precision


class CalibrationInfo(_Strict):
    hash: str
    method: str
    pairs: int
    held_out: int
    report: str | None = None  # file name of the INT8 vs FP32 report, None only with --force


class Manifest(_Strict):
    format: Literal["mfvan-engine/1"] = FORMAT
    model_name: str = Field(max_length=256)
    labels: tuple[Name, ...] = Field(min_length=2, max_length=MAX_LABELS)
    input: InputSpec
    output: OutputSpec
    opset: int
    backend: str = Field(min_length=1)  # the registered backend it was built for (engine.backends.BACKENDS)
    precision: Precision
    model_sha256: str  # sha256 of model.onnx: the model's identity, published in every Result
    files: dict[str, FileEntry]
    source: dict[str, object] = {}  # checkpoint path/sha/git_rev/stage/epoch, model_config
    tensorrt: TensorRTInfo | None = None
    calibration: CalibrationInfo | None = None
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    builder: str = "mfvan-build-engine"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entry(path: Path, role: Role, precision: Precision | None = None) -> FileEntry:
    return FileEntry(role=role, sha256=sha256_file(path), bytes=path.stat().st_size, precision=precision)


def write_json_atomic(path: Path, data: object) -> None:
    """tmp + os.replace: a crash mid-write never leaves a truncated manifest behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a service user must be able to read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    path = folder / MANIFEST
    write_json_atomic(path, manifest.model_dump(mode="json"))
    return path


class Artefact:
    """A verified artefact folder: `manifest` plus paths of the files it lists."""

    def __init__(self, folder: Path, manifest: Manifest):
        self.folder = folder
        self.manifest = manifest

    def path(self, name: str) -> Path:
        return self.folder / name

    def has(self, name: str) -> bool:
        return name in self.manifest.files

    def files_with_role(self, role: Role) -> list[str]:
        return [n for n, e in self.manifest.files.items() if e.role == role]

    @property
    def crop_size(self) -> int:
        return self.manifest.input.crop_size

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @cached_property
    def identity(self) -> str:
        """sha256 over the model file's sha256 and the manifest's meaning (labels, I/O spec)."""
        m = self.manifest
        meaning = {"model_sha256": m.model_sha256, "labels": list(m.labels),
                   "input": m.input.model_dump(mode="json"), "output": m.output.model_dump(mode="json")}
        return hashlib.sha256(json.dumps(meaning, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def __repr__(self) -> str:
        m = self.manifest
        return f"Artefact({self.folder}, {m.model_name}, {m.backend}/{m.precision}, sha={m.model_sha256[:12]})"


def resolve(folder: str | os.PathLike[str] | None) -> Path:
    """'' or None means the bundled demo artefact."""
    return DEMO_DIR if not folder else Path(folder).expanduser()


def load_artefact(folder: str | os.PathLike[str] | None, *, verify: bool = True) -> Artefact:
    """Read and (by default) verify an artefact; raise ArtefactError saying how to rebuild."""
    root = resolve(folder)
    hint = rebuild_hint(root)
    mpath = root / MANIFEST
    if not mpath.is_file():
        what = "the bundled demo artefact is not built yet" if root == DEMO_DIR else f"{mpath} does not exist"
        raise ArtefactError(f"engine artefact {root}: {what}; {hint}")
    try:
        if mpath.stat().st_size > MAX_MANIFEST_BYTES:
            raise ArtefactError(f"{mpath}: larger than {MAX_MANIFEST_BYTES} bytes, not a manifest; {hint}")
        raw = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtefactError(f"{mpath}: unreadable manifest ({exc}); {hint}") from None
    except RecursionError:
        raise ArtefactError(f"{mpath}: unreadable manifest (nested too deeply); {hint}") from None
    if isinstance(raw, dict) and raw.get("format") != FORMAT:
        raise ArtefactError(f"{mpath}: format {raw.get('format')!r}, this engine reads {FORMAT!r}; {hint}")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ArtefactError(f"{mpath}: invalid manifest at {where}: {first['msg']}; {hint}") from None
    if ONNX_FP32 not in manifest.files:
        raise ArtefactError(f"{mpath}: lists no {ONNX_FP32}; {hint}")
    if manifest.files[ONNX_FP32].sha256 != manifest.model_sha256:
        raise ArtefactError(f"{mpath}: model_sha256 disagrees with the {ONNX_FP32} entry; {hint}")
    if len(set(manifest.labels)) != len(manifest.labels):
        raise ArtefactError(f"{mpath}: labels repeat ({', '.join(manifest.labels)}); {hint}")
    if len(manifest.labels) != manifest.output.num_classes:
        raise ArtefactError(f"{mpath}: {len(manifest.labels)} labels for {manifest.output.num_classes} classes; {hint}")
    if verify:
        for name, entry in manifest.files.items():
            p = root / name
            if not p.is_file():
                raise ArtefactError(f"{root}: {name} is missing; {hint}")
            size = p.stat().st_size
            if size != entry.bytes:
                raise ArtefactError(f"{root}: {name} has {size} bytes, the manifest says {entry.bytes} (truncated or replaced?); {hint}")
            digest = sha256_file(p)
            if digest != entry.sha256:
                raise ArtefactError(
                    f"{root}: {name} sha256 {digest[:12]}… does not match the manifest's {entry.sha256[:12]}… "
                    f"(corrupted or replaced); {hint}"
                )
    return Artefact(root, manifest)
