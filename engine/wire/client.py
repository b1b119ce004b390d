"""Subscriber SDK: what interview-room software imports to receive mfvan results.

    from engine.wire.client import Subscriber
    with Subscriber("tcp://127.0.0.1:5556", cameras=["cam0"]) as sub:
        for event in sub:
            print(event.header.label, event.latency_ms)

It validates every message with the protocol decoder (a bad one is counted by reason and
skipped, never raised), tracks per-stream sequence gaps (a gap means a pair was refused at a
full queue or a message was lost), and measures end-to-end latency (receive time minus the
capture time of the apex frame; across hosts that assumes synchronised wall clocks).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import zmq

from engine.wire import protocol as P
from engine.wire.security import Security, secure_connect

DEFAULT_TOPICS = (P.TOPIC_LABEL, P.TOPIC_MACRO, P.TOPIC_STATUS)


@dataclass
class Delivery:
    topic: str
    header: P.Header
    arrays: list[np.ndarray]
    received_ns: int
    gap: int = 0  # sequence numbers skipped on this stream just before this message

    @property
    def kind(self) -> str:
        return type(self.header).__name__.lower()

    @property
    def latency_ms(self) -> float | None:
        """Receive time minus the apex frame's capture time."""
        ts = getattr(self.header, "apex_ts_ns", None)
        return None if ts is None else (self.received_ns - ts) / 1e6

    @property
    def heatmap(self) -> np.ndarray | None:
        h = self.header
        return self.arrays[0] if isinstance(h, P.Result) and h.heatmap is not None else None

    @property
    def apex_crop(self) -> np.ndarray | None:
        h = self.header
        if isinstance(h, P.Result) and h.apex_crop is not None:
            return self.arrays[-1]
        return None


@dataclass
class SequenceTracker:
    """Counts skipped and late sequence numbers per stream (kind, camera or component)."""

    window: int = 4096
    _highest: dict[tuple[str, str], int] = field(default_factory=dict)
    _missing: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    skipped: int = 0
    late: int = 0
    duplicate: int = 0

    def observe(self, stream: tuple[str, str], seq: int) -> int:
        """Returns how many numbers were skipped right before `seq` (0 when in order)."""
        high = self._highest.get(stream)
        missing = self._missing.setdefault(stream, set())
        if high is None:
            self._highest[stream] = seq
            return 0
        if seq > high:
            gap = seq - high - 1
            self.skipped += gap
            missing.update(range(max(high + 1, seq - self.window), seq))
            self._highest[stream] = seq
            if len(missing) > self.window:
                floor = seq - self.window
                missing.difference_update({s for s in missing if s < floor})
            return gap
        if seq in missing:
            missing.discard(seq)
            self.late += 1
        else:
            self.duplicate += 1
        return 0

    @property
    def missing(self) -> int:
        """Skipped numbers that never arrived late."""
        return self.skipped - self.late


def _stream_of(header: P.Header) -> tuple[str, str] | None:
    if isinstance(header, (P.Result, P.Macro)):
        return (type(header).__name__, header.camera)
    if isinstance(header, P.Heartbeat):
        return ("hb", header.component)
    return None


def topics_for(cameras: Iterable[str] | None, kinds: Iterable[str] = DEFAULT_TOPICS) -> list[bytes]:
    """Subscriptions: every camera (prefix `label/`) or exact cameras (`label/cam1/`)."""
    cams = list(cameras or [])
    out: list[bytes] = []
    for kind in kinds:
        if cams and kind in (P.TOPIC_LABEL, P.TOPIC_MACRO):
            out += [P.topic(kind, c) for c in cams]
        else:
            out.append(kind.encode())
    return out


class Subscriber:
    """A SUB socket on a publisher endpoint, yielding validated Deliveries."""

    def __init__(
        self,
        endpoint: str,
        cameras: Iterable[str] | None = None,
        kinds: Iterable[str] = DEFAULT_TOPICS,
        security: Security | None = None,
        context: zmq.Context | None = None,
        rcvhwm: int = 10_000,
    ):
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        for t in topics_for(cameras, kinds):
            self.sock.setsockopt(zmq.SUBSCRIBE, t)
        secure_connect(self.sock, endpoint, security or Security())
        self.sequences = SequenceTracker()
        self.invalid: Counter[str] = Counter()
        self.received = 0

    def recv(self, timeout_ms: int | None = None) -> Delivery | None:
        """The next valid event, or None when `timeout_ms` passes first (None waits forever)."""
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            wait = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self.sock.poll(wait):
                return None
            frames = self.sock.recv_multipart(copy=False)
            received = P.now_ns()
            try:
                topic_bytes, header, arrays = P.decode(frames, has_topic=True)
            except P.ProtocolError as exc:
                self.invalid[exc.reason] += 1
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            self.received += 1
            stream = _stream_of(header)
            gap = self.sequences.observe(stream, header.seq) if stream else 0
            return Delivery(topic_bytes.decode(errors="replace"), header, arrays, received, gap)

    def __iter__(self) -> Iterator[Delivery]:
        while True:
            event = self.recv()
            if event is not None:
                yield event

    def close(self) -> None:
        self.sock.close(0)
        if self._own_ctx:
            self.ctx.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
