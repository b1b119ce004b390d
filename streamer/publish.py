"""The streamer's side of the wire: micro events → (onset, apex) Pairs, macro → Macro, Status.

Why NOBLOCK: the engine may be slow, restarting or gone; the spotter must never wait for it.
A message the PUSH socket refuses (its high-water mark is reached, or no engine is connected)
is dropped and counted; the queue is the only place where load is shed (DESIGN §3).
"""

from __future__ import annotations

import zmq

from engine.wire.protocol import Macro, Pair, Status, array_spec, encode, encode_pair, now_ns
from engine.wire.security import Security, secure_connect
from streamer.spotting.spotter import SpottedEvent


class Publisher:
    def __init__(self, endpoint: str, camera: str, security: Security | None = None, hwm: int = 64,
                 context: zmq.Context | None = None):
        self.camera = camera
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        self.sock = self.ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 500)  # a clean stop flushes what is queued, briefly
        self.sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only toward a connected engine
        secure_connect(self.sock, endpoint, security or Security())
        self.seq = {"pair": 0, "macro": 0}
        self.sent = {"pair": 0, "macro": 0, "status": 0}
        self.refused = {"pair": 0, "macro": 0, "status": 0}
        # micro events whose crops were already freed (an episode that outlived the crop ring):
        # never sent, so counted here rather than lost silently
        self.nocrop = 0

    def _send(self, kind: str, frames: list) -> bool:
        try:
            self.sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.refused[kind] += 1
            return False
        self.sent[kind] += 1
        return True

    def event(self, ev: SpottedEvent, wall_of) -> bool:
        """Send one spotted event. `wall_of(ts_ns)` maps a capture timestamp to wall-clock ns."""
        spotted = ev.spotted_ns or now_ns()
        if ev.kind == "micro":
            if ev.onset_crop is None or ev.apex_crop is None:
                self.nocrop += 1
                return False
            self.seq["pair"] += 1
            header = Pair(camera=self.camera, track=ev.track, seq=self.seq["pair"], onset_index=ev.onset,
                          apex_index=ev.apex, offset_index=ev.offset, onset_ts_ns=wall_of(ev.onset_ts_ns),
                          apex_ts_ns=wall_of(ev.apex_ts_ns), offset_ts_ns=wall_of(ev.offset_ts_ns),
                          spotted_ns=spotted, score=float(ev.score), crop=array_spec(ev.apex_crop))
            return self._send("pair", encode_pair(header, ev.onset_crop, ev.apex_crop))
        self.seq["macro"] += 1
        header = Macro(camera=self.camera, track=ev.track, seq=self.seq["macro"], onset_index=ev.onset,
                       apex_index=ev.apex, offset_index=ev.offset, onset_ts_ns=wall_of(ev.onset_ts_ns),
                       apex_ts_ns=wall_of(ev.apex_ts_ns), offset_ts_ns=wall_of(ev.offset_ts_ns),
                       score=float(ev.score), spotted_ns=spotted)
        return self._send("macro", encode(header))

    def status(self, state: str, counters: dict[str, int], detail: str = "") -> bool:
        st = Status(component=f"streamer-{self.camera}", state=state, ts_ns=now_ns(),
                    counters={k: int(v) for k, v in counters.items()}, detail=detail[:200])
        return self._send("status", encode(st))

    def close(self) -> None:
        self.sock.close()
        if self._own_ctx:
            self.ctx.term()
