"""Golden test vectors of the wire protocol: the exact frames of every message type, and one bad
message per drop reason, with what a decoder must make of them (docs/vectors/*.json).

Why files and not only round-trip tests: a subscriber in another language (clients/node) has no
access to our encoder; it must decode bytes that were fixed once and reviewed. The expected
values are written from the constructed structs, not from the decoder under test.

Regenerate after a deliberate protocol change (and bump the magic, docs/protocol.md):
    .venv/bin/python -m tests.engine.golden --write
tests/engine/test_golden.py fails while the committed files differ from what this makes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import msgspec
import numpy as np

from engine.wire import protocol as P

ROOT = Path(__file__).resolve().parents[2]
VECTOR_DIR = ROOT / "docs" / "vectors"
SCHEMA_FILE = ROOT / "docs" / "protocol.schema.json"
BIG = 2**53 - 1  # integers beyond this are JSON strings in the vector files (JS doubles round them)

T0 = 1_796_000_000_123_456_789  # a wall-clock ns (2026-11-30): > 2^53, as every real *_ns is
LABELS = ("negative", "positive", "surprise")
NAMES = ("fused", "scale1", "scale2", "scale3")


def _crop(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)


def _heatmap(dtype: str) -> np.ndarray:
    """Like the engine's: slice i normalised to its own max; a disabled scale is all zero."""
    g = np.linspace(0.0, 1.0, 8, dtype=np.float32)
    fused = np.outer(g, g[::-1])
    maps = np.stack([fused / fused.max(), np.outer(g, g), np.outer(g[::-1], g), np.zeros((8, 8), np.float32)])
    if dtype == "uint8":
        return np.rint(maps * 255).astype(np.uint8)
    return maps.astype(np.float16)


def _pair() -> tuple[P.Pair, list[np.ndarray]]:
    on, ap = _crop(1), _crop(2)
    h = P.Pair(camera="cam0", track=3, seq=17, onset_index=1200, apex_index=1232, offset_index=1270,
               onset_ts_ns=T0, apex_ts_ns=T0 + 160_000_000, offset_ts_ns=T0 + 350_000_000,
               spotted_ns=T0 + 512_000_000, score=2.75, crop=P.array_spec(on))
    return h, [on, ap]


def _result(heat_dtype: str | None, crop: bool) -> tuple[P.Result, list[np.ndarray]]:
    pair, (_on, ap) = _pair()
    heat = _heatmap(heat_dtype) if heat_dtype else None
    probs = {"negative": 0.125, "positive": 0.7109375, "surprise": 0.1640625}
    h = P.Result(camera=pair.camera, track=pair.track, seq=pair.seq, label="positive", probs=probs,
                 onset_index=pair.onset_index, apex_index=pair.apex_index, offset_index=pair.offset_index,
                 onset_ts_ns=pair.onset_ts_ns, apex_ts_ns=pair.apex_ts_ns, offset_ts_ns=pair.offset_ts_ns,
                 duration_ns=pair.offset_ts_ns - pair.onset_ts_ns, spotted_ns=pair.spotted_ns,
                 inferred_ns=T0 + 515_000_000, published_ns=T0 + 515_200_000, engine_id="gpu1-4242",
                 model_sha="9a748ee4bc76fa4859b5cdb4a5b4e879b93724f7956f111136caa630a99ccaa4",
                 heatmap=P.array_spec(heat) if heat is not None else None,
                 heatmap_names=NAMES if heat is not None else (), score=pair.score,
                 apex_crop=P.array_spec(ap) if crop else None)
    return h, [a for a in (heat, ap if crop else None) if a is not None]


def _macro() -> P.Macro:
    return P.Macro(camera="cam0", track=3, seq=4, onset_index=2000, apex_index=2060, offset_index=2260,
                   onset_ts_ns=T0, apex_ts_ns=T0 + 300_000_000, offset_ts_ns=T0 + 1_300_000_000, score=6.5,
                   spotted_ns=T0 + 1_450_000_000)


def _model() -> P.ModelInfo:
    return P.ModelInfo(name="mfvan_lite", sha256="9a748ee4bc76fa4859b5cdb4a5b4e879b93724f7956f111136caa630a99ccaa4",
                       labels=LABELS, heatmap_names=NAMES, crop_size=112, backend="onnxruntime", precision="fp32",
                       device="cpu")


def good_messages() -> dict[str, tuple[str, list, P.Header, list[np.ndarray]]]:
    """name -> (description, frames, header, arrays)."""
    out: dict[str, tuple[str, list, P.Header, list[np.ndarray]]] = {}

    def add(name: str, what: str, header: P.Header, arrays: list[np.ndarray], topic: bytes | None) -> None:
        out[name] = (what, [bytes(f) for f in P.encode(header, arrays, topic)], header, arrays)

    h, a = _pair()
    add("pair", "streamer -> engine (PUSH, no topic): onset crop then apex crop", h, a, None)
    h, a = _result("uint8", False)
    add("result_uint8", "label/cam0/: uint8 heatmap (0..255), no crop (publish_crops false)", h, a,
        P.topic(P.TOPIC_LABEL, "cam0"))
    h, a = _result("float16", True)
    add("result_float16_crop", "label/cam0/: float16 heatmap (0..1, little-endian), then the apex crop", h, a,
        P.topic(P.TOPIC_LABEL, "cam0"))
    h, a = _result(None, False)
    add("result_no_arrays", "label/cam0/: a Result without heatmap or crop (null specs, no array frames)", h, a,
        P.topic(P.TOPIC_LABEL, "cam0"))
    add("macro", "macro/cam0/: an expression longer than a micro-expression", _macro(), [],
        P.topic(P.TOPIC_MACRO, "cam0"))
    st = P.Status(component="streamer-cam0", state="running", ts_ns=T0,
                  counters={"frames": 123456, "micro": 2, "macro": 1, "pairs_sent": 2, "pairs_refused": 0})
    add("status_streamer", "status/streamer-cam0/: a streamer's counters (model null)", st, [],
        P.topic(P.TOPIC_STATUS, st.component))
    st = P.Status(component="gpu1-4242", state="running", ts_ns=T0, counters={"pairs_in": 2, "results_out": 2},
                  detail="onnxruntime/fp32 on cpu, model 9a748ee4bc76", model=_model())
    add("status_engine", "status/gpu1-4242/: an engine announcing its model and class list", st, [],
        P.topic(P.TOPIC_STATUS, st.component))
    hb = P.Heartbeat(component="gpu1-4242", seq=99, ts_ns=T0)
    add("heartbeat", "hb/gpu1-4242/: engine liveness, once a second", hb, [], P.topic(P.TOPIC_HEARTBEAT, hb.component))
    return out


def bad_messages() -> dict[str, tuple[str, list, bool, str]]:
    """name -> (description, frames, has_topic, reason): one per drop reason."""
    _, pair_frames, _, _ = good_messages()["pair"]
    _, res_frames, _, _ = good_messages()["result_float16_crop"]
    ph, _ = _pair()
    enc = msgspec.msgpack.encode
    out = {
        "bad_version": ("previous version's magic MFV1", [b"MFV1", *pair_frames[1:]], False, "version"),
        "bad_frames": ("a Pair with one crop frame missing", pair_frames[:3], False, "frames"),
        "bad_header": ("an unknown header type", [P.MAGIC, enc({"type": "nope", "camera": "cam0"})], False, "header"),
        "bad_size": ("a crop declared 4096x4096x3 (48 MiB > 16 MiB)",
                     [P.MAGIC, enc(msgspec.structs.replace(ph, crop=P.ArraySpec("uint8", (4096, 4096, 3)))), b"x", b"x"],
                     False, "size"),
        "bad_array": ("a heatmap frame one byte short", [*res_frames[:3], res_frames[3][:-1], res_frames[4]], True,
                      "array"),
        "bad_topic": ("a Result on a macro/ topic", [b"macro/cam0/", *res_frames[1:]], True, "topic"),
        "bad_schema": ("a Pair whose apex comes before its onset",
                       [P.MAGIC, enc(msgspec.structs.replace(ph, apex_index=ph.onset_index - 1)), *pair_frames[2:]],
                       False, "schema"),
    }
    assert sorted(r for *_, r in out.values()) == sorted(P.REASONS)
    return out


def _jsonable(v):
    """Integers beyond 2^53 as decimal strings: the files must read the same in every language."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return str(v) if abs(v) > BIG else v
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _array_expect(a: np.ndarray) -> dict:
    return {"dtype": str(a.dtype), "shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
            "values": [float(x) if a.dtype.kind == "f" else int(x) for x in a.ravel()]}


def vectors() -> dict[str, dict]:
    out = {}
    for name, (what, frames, header, arrays) in good_messages().items():
        out[name] = {"name": name, "description": what, "has_topic": not isinstance(header, P.Pair),
                     "frames_hex": [f.hex() for f in frames],
                     "expect": {"header": _jsonable(msgspec.to_builtins(header)),
                                "arrays": [_array_expect(a) for a in arrays]}}
    for name, (what, frames, has_topic, reason) in bad_messages().items():
        out[name] = {"name": name, "description": what, "has_topic": has_topic,
                     "frames_hex": [bytes(f).hex() for f in frames], "expect": {"error": reason}}
    return out


def render(v: dict) -> str:
    return json.dumps(v, indent=1) + "\n"


def schema_text() -> str:
    return json.dumps(P.schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.engine.golden", description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="(re)write docs/vectors/*.json and docs/protocol.schema.json")
    args = ap.parse_args(argv)
    if not args.write:
        ap.error("nothing to do without --write")
    VECTOR_DIR.mkdir(parents=True, exist_ok=True)
    for old in VECTOR_DIR.glob("*.json"):
        old.unlink()
    for name, v in vectors().items():
        (VECTOR_DIR / f"{name}.json").write_text(render(v))
    SCHEMA_FILE.write_text(schema_text())
    print(f"wrote {len(vectors())} vectors to {VECTOR_DIR} and {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
