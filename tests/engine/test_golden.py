"""The committed protocol artefacts match the code: docs/protocol.schema.json is what msgspec makes
of the structs, docs/vectors/*.json are what the encoder makes of their messages, and the
decoder turns every committed vector into its expected header and arrays, or drops it for its
expected reason. Regenerate both with `python -m tests.engine.golden --write` after a
deliberate protocol change (a new field is a new magic: docs/protocol.md, Versioning)."""

from __future__ import annotations

import hashlib
import json

import msgspec
import numpy as np
import pytest

from engine.wire import protocol as P
from tests.engine import golden

FILES = sorted(golden.VECTOR_DIR.glob("*.json"))


def test_schema_file_matches_the_structs() -> None:
    committed = golden.SCHEMA_FILE.read_text()
    assert committed == golden.schema_text(), (
        "docs/protocol.schema.json drifted from engine/wire/protocol.py: "
        "run `.venv/bin/python -m tests.engine.golden --write` (and bump the magic if a field changed)")
    schema = json.loads(committed)
    assert set(schema["$defs"]) >= {"Pair", "Result", "Macro", "Status", "Heartbeat", "ModelInfo", "ArraySpec"}
    assert "offset_ts_ns" in schema["$defs"]["Result"]["required"]


def test_committed_vectors_are_what_the_encoder_makes() -> None:
    want = golden.vectors()
    assert sorted(p.stem for p in FILES) == sorted(want), "vector files differ from tests/engine/golden.py"
    for path in FILES:
        assert path.read_text() == golden.render(want[path.stem]), f"{path.name} drifted: regenerate the vectors"


def test_every_message_type_and_every_drop_reason_has_a_vector() -> None:
    kinds, reasons = set(), set()
    for path in FILES:
        v = json.loads(path.read_text())
        if "error" in v["expect"]:
            reasons.add(v["expect"]["error"])
        else:
            kinds.add(v["expect"]["header"]["type"])
    assert kinds == {"pair", "result", "macro", "status", "hb"}
    assert reasons == set(P.REASONS)
    f16 = json.loads((golden.VECTOR_DIR / "result_float16_crop.json").read_text())
    assert [a["dtype"] for a in f16["expect"]["arrays"]] == ["float16", "uint8"]  # heatmap, then crop


def _ints(v):
    """Undo the files' big-integer convention (decimal strings beyond 2^53)."""
    if isinstance(v, str) and v.lstrip("-").isdigit() and abs(int(v)) > golden.BIG:
        return int(v)
    if isinstance(v, dict):
        return {k: _ints(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_ints(x) for x in v]
    return v


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_vector_decodes_to_its_expected_values(path) -> None:
    v = json.loads(path.read_text())
    frames = [bytes.fromhex(h) for h in v["frames_hex"]]
    expect = v["expect"]
    if "error" in expect:
        with pytest.raises(P.ProtocolError) as err:
            P.decode(frames, has_topic=v["has_topic"])
        assert err.value.reason == expect["error"]
        return
    topic, header, arrays = P.decode(frames, has_topic=v["has_topic"])
    assert json.loads(msgspec.json.encode(header)) == _ints(expect["header"])
    assert any(isinstance(x, int) and x > 2**53 for x in msgspec.to_builtins(header).values() if not isinstance(x, bool))
    assert len(arrays) == len(expect["arrays"])
    for arr, want in zip(arrays, expect["arrays"], strict=True):
        assert str(arr.dtype) == want["dtype"] and list(arr.shape) == want["shape"]
        assert hashlib.sha256(arr.tobytes()).hexdigest() == want["sha256"]
        assert np.array_equal(arr.ravel().astype(np.float64), np.asarray(want["values"], np.float64))
    if v["has_topic"]:
        assert topic is not None and topic.endswith(b"/")
    if isinstance(header, P.Result) and header.heatmap is not None:
        # little-endian on the wire: the raw bytes read as '<f2' / uint8 give the same values
        raw = np.frombuffer(frames[3], dtype=np.dtype(header.heatmap.dtype).newbyteorder("<"))
        assert np.array_equal(raw, arrays[0].ravel())
        assert header.duration_ns == header.offset_ts_ns - header.onset_ts_ns
