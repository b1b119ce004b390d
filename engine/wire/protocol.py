"""The mfvan wire protocol, version MFV2 (documented in docs/protocol.md).

Every message is multipart: [topic (PUB only)] + [b"MFV2"] + [msgpack header] + raw arrays.
Headers are msgspec structs tagged by `type`, so the decoder knows the message kind before it
trusts any field; arrays travel as raw bytes whose dtype and shape sit in the header, so large
frames go zero-copy. Nothing is ever pickled.

Decoding is strict: wrong version, wrong frame count, oversized frames, bad schema, arrays
whose bytes do not match their declared shape, or non-finite floats all raise ProtocolError
with a short `reason` that servers count by, never anything else.

Versions: MFV1 had no event end in Pair/Result and no model identity in Status. Decoders are
strict (unknown fields are errors), so any new field is a new magic; an MFV1 receiver drops
every MFV2 message with reason "version" (and vice versa) instead of misreading it.
`docs/protocol.schema.json` is generated from these structs (`schema()`), and a test fails
when the two drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import msgspec
import numpy as np

MAGIC = b"MFV2"

# Size limits: a header is small metadata; arrays are face crops and heatmaps.
MAX_HEADER_BYTES = 64 * 1024
MAX_ARRAY_BYTES = 16 * 1024 * 1024
MAX_NDIM = 4
MAX_DIM = 4096
MAX_LABELS = 64
MAX_FRAMES = 8
ALLOWED_DTYPES = ("uint8", "float16", "float32")

TOPIC_LABEL = "label/"
TOPIC_MACRO = "macro/"
TOPIC_STATUS = "status/"
TOPIC_HEARTBEAT = "hb/"

REASONS = ("version", "frames", "header", "size", "array", "topic", "schema")


class ProtocolError(ValueError):
    """A message that must be dropped. `reason` is one of REASONS (a metrics label)."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


def now_ns() -> int:
    """Wall-clock nanoseconds: comparable across hosts (NTP), unlike monotonic clocks."""
    return time.time_ns()


def topic(kind: str, name: str) -> bytes:
    """`label/cam1/`: the trailing slash keeps a subscription to cam1 from matching cam10."""
    if not name or "/" in name:
        raise ValueError(f"topic names are non-empty and slash-free, got {name!r}")
    return f"{kind}{name}/".encode()


class ArraySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    dtype: str
    shape: tuple[int, ...]


class Pair(msgspec.Struct, tag="pair", frozen=True, forbid_unknown_fields=True):
    """An (onset, apex) crop pair spotted by a streamer, for the engine to classify."""

    camera: str
    track: int
    seq: int
    onset_index: int
    apex_index: int
    offset_index: int
    onset_ts_ns: int  # capture time of the onset frame (wall clock)
    apex_ts_ns: int
    offset_ts_ns: int  # MFV2: capture time of the offset frame, so the Result can carry the interval
    spotted_ns: int  # when the spotter accepted the event
    score: float
    crop: ArraySpec  # both crops share it: (H, W, 3) uint8, BGR, aligned


class Result(msgspec.Struct, tag="result", frozen=True, forbid_unknown_fields=True):
    """A classified micro-expression, published on `label/<camera>/`."""

    camera: str
    track: int
    seq: int
    label: str
    probs: dict[str, float]
    onset_index: int
    apex_index: int
    offset_index: int  # MFV2: the event's interval, copied from the Pair
    onset_ts_ns: int
    apex_ts_ns: int
    offset_ts_ns: int
    duration_ns: int  # offset_ts_ns - onset_ts_ns, so a subscriber need not compute it
    spotted_ns: int
    inferred_ns: int
    published_ns: int
    engine_id: str
    model_sha: str
    heatmap: ArraySpec | None = None  # (S, H, W): heatmap_names[i] is slice i
    heatmap_names: tuple[str, ...] = ()
    score: float = 0.0
    # the aligned apex crop (H, W, 3) uint8 BGR, only when the config says `publish_crops: true`
    apex_crop: ArraySpec | None = None


class Macro(msgspec.Struct, tag="macro", frozen=True, forbid_unknown_fields=True):
    """A spotted expression longer than a micro-expression, published on `macro/<camera>/`."""

    camera: str
    track: int
    seq: int
    onset_index: int
    apex_index: int
    offset_index: int
    onset_ts_ns: int
    apex_ts_ns: int
    offset_ts_ns: int
    score: float
    spotted_ns: int


class ModelInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What an engine serves (MFV2), announced in its Status so a subscriber need not infer the
    class list from `Result.probs` nor look the model up by its hash."""

    name: str  # manifest model_name
    sha256: str  # equals Result.model_sha
    labels: tuple[str, ...]  # the class list, in the network's output order
    heatmap_names: tuple[str, ...]  # names of Result heatmap slices, in order
    crop_size: int  # the (S, S, 3) crops the engine takes; other sizes are dropped
    backend: str  # onnxruntime, tensorrt, torch
    precision: str  # fp32, fp16, int8
    device: str


class Status(msgspec.Struct, tag="status", frozen=True, forbid_unknown_fields=True):
    """Component state and counters, published on `status/<component>/`."""

    component: str
    state: Literal["starting", "running", "degraded", "stopping"]
    ts_ns: int
    counters: dict[str, int] = {}
    detail: str = ""
    model: ModelInfo | None = None  # MFV2: set by engines, None from streamers


class Heartbeat(msgspec.Struct, tag="hb", frozen=True, forbid_unknown_fields=True):
    """One-way liveness, published on `hb/<component>/` once a second."""

    component: str
    seq: int
    ts_ns: int


Header = Pair | Result | Macro | Status | Heartbeat

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Header)


def schema() -> dict:
    """JSON Schema of every header (msgpack maps read like JSON objects), for other languages."""
    out = msgspec.json.schema(Header)
    out["title"] = f"mfvan wire protocol {MAGIC.decode()} headers"
    out["description"] = ("The msgpack header frame of each message (docs/protocol.md). Generated from "
                          "engine/wire/protocol.py by `python -m engine.wire.protocol --schema`.")
    return out


def array_spec(arr: np.ndarray) -> ArraySpec:
    return ArraySpec(dtype=str(arr.dtype), shape=tuple(int(d) for d in arr.shape))


def _check_spec(spec: ArraySpec) -> int:
    if spec.dtype not in ALLOWED_DTYPES:
        raise ProtocolError("array", f"dtype {spec.dtype!r} not in {ALLOWED_DTYPES}")
    if not 1 <= len(spec.shape) <= MAX_NDIM:
        raise ProtocolError("array", f"ndim {len(spec.shape)} outside 1..{MAX_NDIM}")
    if any(d <= 0 or d > MAX_DIM for d in spec.shape):
        raise ProtocolError("array", f"shape {spec.shape} has a dim outside 1..{MAX_DIM}")
    nbytes = int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise ProtocolError("size", f"array of {nbytes} bytes > {MAX_ARRAY_BYTES}")
    return nbytes


def _array(buf: bytes | memoryview, spec: ArraySpec) -> np.ndarray:
    nbytes = _check_spec(spec)
    if len(buf) != nbytes:
        raise ProtocolError("array", f"{len(buf)} bytes for {spec.shape} {spec.dtype} (want {nbytes})")
    arr = np.frombuffer(buf, dtype=spec.dtype).reshape(spec.shape)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ProtocolError("array", "non-finite values")
    return arr


# every integer of an event (track, seq, frame indices, wall-clock ns) is in 0..2**63-1 (a
# Result's duration in int64). Why:
# msgpack carries -2**63..2**64-1, and the engine derives Result.duration_ns = offset - onset:
# two in-range uint64 timestamps can make a difference msgpack cannot encode, which crashed the
# engine on one hostile Pair (the 100,000-message flood); no streamer ever sends such values
INT_MAX = 2**63 - 1


SIGNED = frozenset({"duration_ns"})  # offset - onset of two wall-clock stamps: negative after a clock step


def _validate_ints(h: Pair | Result | Macro) -> None:
    for name in h.__struct_fields__:
        v = getattr(h, name)
        low = -INT_MAX - 1 if name in SIGNED else 0
        if type(v) is int and not low <= v <= INT_MAX:
            raise ProtocolError("schema", f"{name} must be in {low}..2**63-1, got {v}")


def _validate_header(h: Header) -> None:
    if isinstance(h, (Pair, Result, Macro)):
        _validate_ints(h)
    if isinstance(h, Pair):
        if not (h.onset_index <= h.apex_index <= h.offset_index):
            raise ProtocolError("schema", "frame indices must satisfy onset <= apex <= offset")
        if not (h.crop.dtype == "uint8" and len(h.crop.shape) == 3 and h.crop.shape[2] == 3):
            raise ProtocolError("schema", f"crops must be (H, W, 3) uint8, got {h.crop}")
    if isinstance(h, Result):
        if not (h.onset_index <= h.apex_index <= h.offset_index):
            raise ProtocolError("schema", "frame indices must satisfy onset <= apex <= offset")
        if len(h.probs) > MAX_LABELS:
            raise ProtocolError("schema", "too many labels")
        if (h.heatmap is None) != (len(h.heatmap_names) == 0):
            raise ProtocolError("schema", "heatmap and heatmap_names go together")
        if h.heatmap is not None and h.heatmap.shape[0] != len(h.heatmap_names):
            raise ProtocolError("schema", "one heatmap name per heatmap slice")
        if h.apex_crop is not None and not (h.apex_crop.dtype == "uint8" and len(h.apex_crop.shape) == 3):
            raise ProtocolError("schema", "apex_crop must be (H, W, 3) uint8")
    if isinstance(h, Status) and h.model is not None:
        if len(h.model.labels) > MAX_LABELS or len(h.model.heatmap_names) > MAX_FRAMES:
            raise ProtocolError("schema", "too many labels or heatmap names in the model info")
    for name in ("camera", "component"):
        value = getattr(h, name, None)
        if value is not None and (not value or "/" in value or len(value) > 64):
            raise ProtocolError("schema", f"{name} must be 1..64 chars without '/'")


def encode(header: Header, arrays: Sequence[np.ndarray] = (), topic_bytes: bytes | None = None) -> list:
    """Frames for `socket.send_multipart(frames, copy=False)`. Arrays are sent without copying."""
    frames: list = [] if topic_bytes is None else [topic_bytes]
    frames.append(MAGIC)
    frames.append(_ENCODER.encode(header))
    for arr in arrays:
        frames.append(np.ascontiguousarray(arr).data)
    return frames


def _bytes(frame: object) -> bytes | memoryview:
    # zmq.Frame (copy=False) exposes .buffer; plain bytes pass through
    buf = getattr(frame, "buffer", frame)
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        raise ProtocolError("frames", f"frame of type {type(frame).__name__}")
    return buf


def decode(frames: Sequence[object], *, has_topic: bool = False) -> tuple[bytes | None, Header, list[np.ndarray]]:
    """Validate and decode one multipart message → (topic, header, arrays).

    Raises ProtocolError only. Arrays view the received buffers (read-only, zero-copy).
    """
    n = len(frames)
    head = 1 if has_topic else 0
    if n < head + 2 or n > head + 2 + MAX_FRAMES:
        raise ProtocolError("frames", f"{n} frames")
    topic_bytes: bytes | None = None
    if has_topic:
        t = bytes(_bytes(frames[0]))
        if len(t) > 256 or not t.endswith(b"/"):
            raise ProtocolError("topic", f"bad topic {t[:64]!r}")
        topic_bytes = t
    if bytes(_bytes(frames[head])) != MAGIC:
        raise ProtocolError("version", f"expected {MAGIC!r}, got {bytes(_bytes(frames[head]))[:16]!r}")
    raw = _bytes(frames[head + 1])
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError("size", f"header of {len(raw)} bytes > {MAX_HEADER_BYTES}")
    try:
        header = _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError("header", str(exc)[:200]) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ProtocolError("header", f"{type(exc).__name__}: {str(exc)[:200]}") from None
    _validate_header(header)
    payload = frames[head + 2:]
    if isinstance(header, Pair):
        specs = [header.crop, header.crop]
    elif isinstance(header, Result):
        specs = [s for s in (header.heatmap, header.apex_crop) if s is not None]
    else:
        specs = []
    if len(payload) != len(specs):
        raise ProtocolError("frames", f"{type(header).__name__} takes {len(specs)} arrays, got {len(payload)}")
    arrays = [_array(_bytes(f), s) for f, s in zip(payload, specs, strict=True)]
    if has_topic:
        expected = {Result: TOPIC_LABEL, Macro: TOPIC_MACRO, Status: TOPIC_STATUS, Heartbeat: TOPIC_HEARTBEAT}.get(type(header))
        if expected is None or not topic_bytes.startswith(expected.encode()):
            raise ProtocolError("topic", f"{type(header).__name__} on topic {topic_bytes!r}")
    return topic_bytes, header, arrays


def encode_pair(header: Pair, onset: np.ndarray, apex: np.ndarray) -> list:
    if onset.shape != apex.shape or onset.dtype != np.uint8 or apex.dtype != np.uint8:
        raise ValueError("onset and apex must be uint8 crops of one shape")
    return encode(header, [onset, apex])


def encode_result(header: Result, heatmap: np.ndarray | None, apex_crop: np.ndarray | None = None) -> list:
    """Frames of a Result on `label/<camera>/`; arrays must match the header's specs."""
    arrays = [a for a in (heatmap, apex_crop) if a is not None]
    specs = [s for s in (header.heatmap, header.apex_crop) if s is not None]
    if [array_spec(a) for a in arrays] != specs:
        raise ValueError("heatmap/apex_crop arrays do not match the header's ArraySpecs")
    return encode(header, arrays, topic(TOPIC_LABEL, header.camera))


if __name__ == "__main__":
    import json
    import sys

    if sys.argv[1:] != ["--schema"]:
        print("usage: python -m engine.wire.protocol --schema", file=sys.stderr)
        raise SystemExit(2)
    print(json.dumps(schema(), indent=2, sort_keys=True))
