"""MFV2: every message round-trips; anything malformed raises ProtocolError and nothing else."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.wire import protocol as P

names = st.from_regex(r"[A-Za-z0-9_.-]{1,16}", fullmatch=True)
i64 = st.integers(min_value=0, max_value=2**62)
finite = st.floats(allow_nan=False, allow_infinity=False, width=32)


@st.composite
def crops(draw) -> np.ndarray:
    h = draw(st.integers(1, 24))
    w = draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@st.composite
def pairs(draw):
    onset = draw(crops())
    apex = np.ascontiguousarray(onset[::-1])
    o = draw(st.integers(0, 10**9))
    a = o + draw(st.integers(0, 500))
    f = a + draw(st.integers(0, 500))
    header = P.Pair(camera=draw(names), track=draw(i64), seq=draw(i64), onset_index=o, apex_index=a,
                    offset_index=f, onset_ts_ns=draw(i64), apex_ts_ns=draw(i64), offset_ts_ns=draw(i64), spotted_ns=draw(i64),
                    score=draw(finite), crop=P.array_spec(onset))
    return header, [onset, apex]


@st.composite
def results(draw):
    labels = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    probs = {k: draw(st.floats(0, 1)) for k in labels}
    with_heat = draw(st.booleans())
    with_crop = draw(st.booleans())
    arrays = []
    heat_spec = crop_spec = None
    heat_names: tuple[str, ...] = ()
    if with_heat:
        dtype = draw(st.sampled_from(["uint8", "float16", "float32"]))
        n = draw(st.integers(1, 4))
        heat = (np.random.default_rng(draw(st.integers(0, 99))).random((n, 7, 7)) * 200).astype(dtype)
        arrays.append(heat)
        heat_spec, heat_names = P.array_spec(heat), tuple(f"m{i}" for i in range(n))
    if with_crop:
        crop = draw(crops())
        arrays.append(crop)
        crop_spec = P.array_spec(crop)
    o = draw(st.integers(0, 10**9))
    a = o + draw(st.integers(0, 500))
    f = a + draw(st.integers(0, 500))
    t0, t1 = draw(i64), draw(i64)
    header = P.Result(camera=draw(names), track=draw(i64), seq=draw(i64), label=labels[0], probs=probs,
                      onset_index=o, apex_index=a, offset_index=f, onset_ts_ns=t0, apex_ts_ns=draw(i64),
                      offset_ts_ns=t1, duration_ns=t1 - t0, spotted_ns=draw(i64),
                      inferred_ns=draw(i64), published_ns=draw(i64), engine_id=draw(names),
                      model_sha=draw(st.text(max_size=64)), heatmap=heat_spec, heatmap_names=heat_names,
                      score=draw(finite), apex_crop=crop_spec)
    return header, arrays


macros = st.builds(P.Macro, camera=names, track=i64, seq=i64, onset_index=i64, apex_index=i64, offset_index=i64,
                   onset_ts_ns=i64, apex_ts_ns=i64, offset_ts_ns=i64, score=finite, spotted_ns=i64)
statuses = st.builds(P.Status, component=names, state=st.sampled_from(["starting", "running", "degraded", "stopping"]),
                     ts_ns=i64, counters=st.dictionaries(names, st.integers(0, 2**40), max_size=8),
                     detail=st.text(max_size=100))
beats = st.builds(P.Heartbeat, component=names, seq=i64, ts_ns=i64)
TOPIC = {P.Result: P.TOPIC_LABEL, P.Macro: P.TOPIC_MACRO, P.Status: P.TOPIC_STATUS, P.Heartbeat: P.TOPIC_HEARTBEAT}


def _as_bytes(frames: list) -> list[bytes]:
    return [bytes(f) for f in frames]


@given(pairs())
def test_pair_round_trips(msg) -> None:
    header, arrays = msg
    topic, got, got_arrays = P.decode(_as_bytes(P.encode_pair(header, *arrays)))
    assert topic is None and got == header
    for a, b in zip(arrays, got_arrays, strict=True):
        np.testing.assert_array_equal(a, b)


@given(results())
def test_result_round_trips(msg) -> None:
    header, arrays = msg
    heat = arrays[0] if header.heatmap is not None else None
    crop = arrays[-1] if header.apex_crop is not None else None
    topic, got, got_arrays = P.decode(_as_bytes(P.encode_result(header, heat, crop)), has_topic=True)
    assert topic == f"label/{header.camera}/".encode() and got == header
    assert len(got_arrays) == len(arrays)
    for a, b in zip(arrays, got_arrays, strict=True):
        np.testing.assert_array_equal(a, b)


@given(st.one_of(macros, statuses, beats))
def test_events_round_trip(header) -> None:
    name = header.camera if isinstance(header, P.Macro) else header.component
    frames = P.encode(header, (), P.topic(TOPIC[type(header)], name))
    topic, got, arrays = P.decode(_as_bytes(frames), has_topic=True)
    assert got == header and arrays == []
    # the PUSH channel carries the same messages without a topic
    assert P.decode(_as_bytes(P.encode(header)))[1] == header


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), min_size=0, max_size=12), st.booleans())
def test_random_frames_raise_only_protocol_error(frames, has_topic) -> None:
    try:
        P.decode(frames, has_topic=has_topic)
    except P.ProtocolError as exc:
        assert exc.reason in P.REASONS


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(pairs(), st.data())
def test_mutated_pairs_raise_only_protocol_error(msg, data) -> None:
    frames = _as_bytes(P.encode_pair(*msg[:1], *msg[1]))
    i = data.draw(st.integers(0, len(frames) - 1))
    buf = bytearray(frames[i])
    op = data.draw(st.sampled_from(["flip", "truncate", "extend", "drop", "dup"]))
    if op == "flip" and buf:
        j = data.draw(st.integers(0, len(buf) - 1))
        buf[j] ^= data.draw(st.integers(1, 255))
        frames[i] = bytes(buf)
    elif op == "truncate":
        frames[i] = bytes(buf[: data.draw(st.integers(0, max(0, len(buf) - 1)))])
    elif op == "extend":
        frames[i] = bytes(buf) + data.draw(st.binary(min_size=1, max_size=16))
    elif op == "drop":
        del frames[i]
    else:
        frames.insert(i, frames[i])
    try:
        P.decode(frames)
    except P.ProtocolError as exc:
        assert exc.reason in P.REASONS


def _pair(image: np.ndarray, **kw) -> P.Pair:
    fields = dict(camera="cam0", track=1, seq=1, onset_index=0, apex_index=5, offset_index=9, onset_ts_ns=1,
                  apex_ts_ns=2, offset_ts_ns=4, spotted_ns=3, score=1.0, crop=P.array_spec(image))
    fields.update(kw)
    return P.Pair(**fields)


def test_wrong_version_is_refused() -> None:
    crop = np.zeros((4, 4, 3), np.uint8)
    frames = _as_bytes(P.encode_pair(_pair(crop), crop, crop))
    frames[0] = b"MFV1"  # the previous version is another version: dropped, never misread
    with pytest.raises(P.ProtocolError) as err:
        P.decode(frames)
    assert err.value.reason == "version"


def test_huge_declared_shape_is_refused_before_allocation() -> None:
    crop = np.zeros((4, 4, 3), np.uint8)
    header = _pair(crop, crop=P.ArraySpec("uint8", (4096, 4096, 3)))
    frames = [P.MAGIC, msgspec.msgpack.encode(header), b"x", b"x"]
    with pytest.raises(P.ProtocolError) as err:
        P.decode(frames)
    assert err.value.reason == "size"


def test_array_bytes_must_match_shape() -> None:
    crop = np.zeros((4, 4, 3), np.uint8)
    frames = _as_bytes(P.encode_pair(_pair(crop), crop, crop))
    frames[-1] = frames[-1][:-1]
    with pytest.raises(P.ProtocolError, match="bytes for"):
        P.decode(frames)


def test_nan_heatmap_is_refused() -> None:
    heat = np.full((1, 7, 7), np.nan, np.float32)
    header = P.Result(camera="c", track=0, seq=0, label="a", probs={"a": 1.0}, onset_index=0, apex_index=0,
                      offset_index=0, onset_ts_ns=0, apex_ts_ns=0, offset_ts_ns=0, duration_ns=0, spotted_ns=0, inferred_ns=0, published_ns=0, engine_id="e", model_sha="",
                      heatmap=P.array_spec(heat), heatmap_names=("fused",))
    with pytest.raises(P.ProtocolError, match="non-finite"):
        P.decode(_as_bytes(P.encode_result(header, heat)), has_topic=True)


def test_message_on_the_wrong_topic_is_refused() -> None:
    beat = P.Heartbeat(component="engine0", seq=1, ts_ns=1)
    with pytest.raises(P.ProtocolError) as err:
        P.decode(_as_bytes(P.encode(beat, (), b"label/cam0/")), has_topic=True)
    assert err.value.reason == "topic"


def test_pair_indices_must_be_ordered() -> None:
    crop = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(P.ProtocolError) as err:
        P.decode(_as_bytes(P.encode_pair(_pair(crop, apex_index=20), crop, crop)))
    assert err.value.reason == "schema"


def test_topic_names_have_a_trailing_slash_and_no_inner_slash() -> None:
    assert P.topic(P.TOPIC_LABEL, "cam1") == b"label/cam1/"
    assert not P.topic(P.TOPIC_LABEL, "cam10").startswith(P.topic(P.TOPIC_LABEL, "cam1"))
    with pytest.raises(ValueError):
        P.topic(P.TOPIC_LABEL, "a/b")


@pytest.mark.parametrize("field,value", [("offset_ts_ns", 2**64 - 1), ("onset_ts_ns", -(2**63)), ("seq", -1),
                                         ("track", 2**63), ("apex_index", -1)])
def test_event_integers_outside_0_to_int64_are_refused(field: str, value: int) -> None:
    """msgpack carries -2**63..2**64-1; the engine computes offset - onset for the Result, which
    two such values can overflow (one hostile Pair crashed the engine). Nothing legitimate is
    negative or above int64: refused at decode as a schema error."""
    crop = np.zeros((4, 4, 3), np.uint8)
    kw = {field: value}
    if field == "apex_index":
        kw.update(onset_index=-1)
    frames = _as_bytes(P.encode_pair(_pair(crop, **kw), crop, crop))
    with pytest.raises(P.ProtocolError) as err:
        P.decode(frames)
    assert err.value.reason == "schema"
    ok = _as_bytes(P.encode_pair(_pair(crop, offset_ts_ns=2**63 - 1), crop, crop))
    assert P.decode(ok)[1].offset_ts_ns == 2**63 - 1
