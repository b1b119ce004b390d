"""The PUSH side against a real PULL socket: micro events become valid Pair messages with both
crops, macro events Macro messages; with no engine the send refuses at once and is counted."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import zmq

from engine.wire.protocol import Macro, Pair, Status, decode
from streamer.publish import Publisher
from streamer.spotting.spotter import SpottedEvent


def event(kind: str) -> SpottedEvent:
    rng = np.random.default_rng(0)
    c0 = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    c1 = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    return SpottedEvent(3, 100, 120, 140, 500, 600, 700, 0.25, kind, "brow_l", onset_crop=c0, apex_crop=c1)


def test_pairs_and_macros_reach_a_pull_socket(tmp_path: Path) -> None:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"ipc://{tmp_path}/pairs")
    pub = Publisher(f"ipc://{tmp_path}/pairs", "cam1", context=ctx)
    time.sleep(0.2)  # IMMEDIATE: wait for the connection before sending
    ev = event("micro")
    assert pub.event(ev, lambda ts: ts + 10**18)
    assert pub.event(event("macro"), lambda ts: ts)
    assert pub.status("running", {"frames": 5})
    got = []
    for _ in range(3):
        assert pull.poll(2000)
        got.append(decode(pull.recv_multipart(copy=False)))
    (_, pair, arrays), (_, macro, _), (_, status, _) = got
    assert isinstance(pair, Pair) and pair.camera == "cam1" and pair.seq == 1 and pair.track == 3
    assert (pair.onset_index, pair.apex_index, pair.offset_index) == (100, 120, 140)
    assert pair.apex_ts_ns == 600 + 10**18
    np.testing.assert_array_equal(arrays[0], ev.onset_crop)
    np.testing.assert_array_equal(arrays[1], ev.apex_crop)
    assert isinstance(macro, Macro) and macro.seq == 1 and macro.offset_ts_ns == 700
    assert isinstance(status, Status) and status.counters == {"frames": 5} and status.component == "streamer-cam1"
    pub.close()
    pull.close(0)
    ctx.term()


def test_no_engine_means_refused_and_counted_never_blocked(tmp_path: Path) -> None:
    pub = Publisher(f"ipc://{tmp_path}/nobody", "cam1", hwm=2)
    t0 = time.perf_counter()
    sent = [pub.event(event("micro"), lambda ts: ts) for _ in range(20)]
    assert time.perf_counter() - t0 < 1.0
    assert not any(sent)
    assert pub.refused["pair"] == 20 and pub.sent["pair"] == 0
    pub.close()


def test_micro_event_without_crops_is_counted_not_lost(tmp_path: Path) -> None:
    """An episode that outlived the crop ring has no crops left: it cannot become a Pair, and
    the publisher says so in a counter instead of dropping it silently."""
    pub = Publisher(f"ipc://{tmp_path}/pairs", "cam1")
    try:
        ev = SpottedEvent(3, 100, 120, 140, 500, 600, 700, 0.25, "micro", "brow_l")
        assert pub.event(ev, lambda ts: ts) is False
        assert pub.nocrop == 1 and pub.sent["pair"] == 0 and pub.refused["pair"] == 0
        assert pub.seq["pair"] == 0  # no sequence number is burnt: subscribers see no false gap
    finally:
        pub.close()
