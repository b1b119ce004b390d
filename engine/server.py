"""The inference server: PULL pairs → validate → micro-batch → infer → PUB results (DESIGN §4–5).

`run(cfg, stop_event)` is the whole engine process: `mfvan-engined` calls it in the
foreground, `mfvan-streamd` in a spawned child. Why these choices:
- Every received message goes through `engine.wire.protocol.decode`; a bad one is dropped,
  counted by its ProtocolError reason and logged with rate limiting, never fatal: one broken
  or hostile sender must not take the engine down for every camera.
- Micro-batching (≤ max_batch pairs or ≤ max_wait_ms after the first pair) trades at most a
  few ms of latency for throughput when several cameras spot at once.
- The PUB side is an XPUB with non-blocking sends: a slow subscriber can never stall
  inference. By default a subscriber whose queue is full (pub_hwm) loses only its own
  messages, dropped inside libzmq where no publisher can count them (subscribers see the gap
  in the heartbeat `seq`). `pub_nodrop: true` sets XPUB_NODROP instead: every refusal is
  counted (`dropped{reason="pub_full"}`), at the price that one full subscriber queue makes
  the message refused for all subscribers. Isolation is the default because one stalled
  client must not starve the others.
- The PULL and PUB sockets live in two ZeroMQ contexts, so each may run its own CURVE
  allow-list (ZAP) handler; one context allows only one. The allow-list is re-read when its
  folder changes (or on SIGHUP); when a key disappears every connection of that socket is
  closed, so each client must authenticate again and the revoked one cannot.
- Subscriptions are checked and counted per peer as distinct topics (`Subscriptions`): one
  peer can exhaust only its own share, and its share is freed when it leaves.
- The artefact is verified (sha256 of every file, I/O spec) before any socket is bound, so a
  corrupt model fails at start with the rebuild command instead of serving garbage.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import struct
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Protocol

import msgspec
import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from engine.artefact import Artefact, ArtefactError, load_artefact
from engine.backends import Backend, BackendUnavailable, check_outputs, load_backend
from engine.config.engine import EngineConfig
from engine.metrics import EngineMetrics, RateLimitedLog
from engine.process import mmap_large_buffers, release_freed_memory
from engine.tensors import pair_inputs, upsample_heatmaps
from engine.wire.protocol import (
    MAX_ARRAY_BYTES,
    MAX_HEADER_BYTES,
    TOPIC_HEARTBEAT,
    TOPIC_LABEL,
    TOPIC_MACRO,
    TOPIC_STATUS,
    Heartbeat,
    Macro,
    ModelInfo,
    Pair,
    ProtocolError,
    Result,
    Status,
    array_spec,
    decode,
    encode,
    encode_result,
    now_ns,
    topic,
)
from engine.wire.security import (
    Guard,
    SecurityError,
    curve_enabled,
    secure_bind,
    secure_connect,
    split_endpoints,
)

log = logging.getLogger("mfvan.engine")
STATUS_EVERY_S = 5.0


MAX_SUBSCRIPTIONS = 4096  # distinct topics held over all peers
MAX_TOPICS_PER_PEER = 256  # distinct topics one peer (a host over TCP, a local process over ipc) may hold
MAX_SUBSCRIPTION_BYTES = 1 + len("status/") + 64 + 1  # flag byte + longest kind + 64-byte name + "/"
# With CURVE the XPUB's ZMQ_MAXMSGSIZE also limits the handshake commands (HELLO is 200 bytes,
# INITIATE ~260 plus metadata) and every encrypted frame (+33 bytes of box): a limit of 73
# made every CURVE subscriber fail its handshake. Such a socket gets this limit instead, and
# the engine bounds the subscription length itself (valid_topic: at most 71 bytes applied).
CURVE_XPUB_MAXMSGSIZE = 512
HOUSEKEEPING_S = 0.2  # socket monitors, allow-list changes
# after this many messages, the first idle poll hands the heap's free pages back (malloc_trim):
# a burst (a flood of junk, a backlog after a stall) leaves the arenas at its high-water mark
# otherwise, and RSS would keep every burst's peak for good
TRIM_AFTER_MESSAGES = 256
TRIM_IDLE_S = 0.5  # ... once no message came for this long: the burst is over, not paused
_KINDS = (TOPIC_LABEL.encode(), TOPIC_MACRO.encode(), TOPIC_STATUS.encode(), TOPIC_HEARTBEAT.encode())


def valid_topic(topic: bytes) -> bool:
    """Can `topic` match something this engine publishes? (b"" matches everything.)"""
    if any(kind.startswith(topic) for kind in _KINDS):
        return True
    for kind in _KINDS:
        if topic.startswith(kind):
            name, _, tail = topic[len(kind):].partition(b"/")
            return 0 < len(name) <= 64 and tail == b""
    return False


def peer_key(address: str) -> str:
    """The peer behind libzmq's Peer-Address: the IP for TCP, `unix:uid:gid:pid` for ipc."""
    if address.startswith("localhost:"):  # AF_UNIX: getnameinfo's "localhost" + ":uid:gid:pid"
        return "unix:" + address.split(":", 1)[1]
    return address


def _peer_of(frame: zmq.Frame) -> str | None:
    """None when libzmq attached no metadata: the unsubscriptions it sends for a departed peer."""
    try:
        return peer_key(frame.get("Peer-Address"))
    except zmq.ZMQError:
        return None


def _describe(fd: int) -> tuple[str | None, tuple | None]:
    """(peer key, identity of the connection) of a socket fd owned by libzmq; read on a dup."""
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None, None
    try:
        if s.family == socket.AF_UNIX:
            so_peercred = getattr(socket, "SO_PEERCRED", None)
            if so_peercred is None:
                return None, None
            pid, uid, gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, so_peercred, 12))
            return f"unix:{uid}:{gid}:{pid}", (s.family, s.getsockname(), pid, uid, gid)
        peer = s.getpeername()
        return peer[0], (s.family, s.getsockname(), peer)
    except OSError:
        return None, None
    finally:
        s.close()


def _is_ours(ident: tuple, endpoint: bytes) -> bool:
    """Is the connection described by `ident` one accepted on `endpoint` (its local end)?"""
    local = ident[1]
    text = endpoint.decode(errors="replace")
    if text.startswith("ipc://"):
        return local == text[len("ipc://"):]
    port = text.rsplit(":", 1)[-1]
    return isinstance(local, tuple) and port.isdigit() and local[1] == int(port)


class Connections:
    """The accepted connections of one bound socket, from its monitor: fd -> peer.

    Why: libzmq names the peer of each subscription (Peer-Address) but neither says when a peer
    has no connection left nor lets the owner drop a connection. The monitor gives the fd of
    every accepted and closed connection: the subscription table forgets a peer that left, and
    a revoked allow-list key closes every connection (shutdown on the fd; libzmq sees the peer
    go, and each client's socket reconnects and must pass the allow-list again).
    """

    def __init__(self, sock: zmq.Socket):
        self.sock = sock
        self.mon = sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self.fds: dict[int, tuple[str | None, tuple | None]] = {}
        self.live: Counter[str] = Counter()

    def _closed(self, fd: int, gone: list[str]) -> None:
        key, _ = self.fds.pop(fd, (None, None))
        if key is not None:
            self.live[key] -= 1
            if self.live[key] <= 0:
                del self.live[key]
                gone.append(key)

    def poll(self, limit: int = 1000) -> list[str]:
        """Apply the queued events; returns the peers whose last connection closed."""
        gone: list[str] = []
        for _ in range(limit):
            try:
                msg = recv_monitor_message(self.mon, zmq.NOBLOCK)
            except zmq.Again:
                break
            fd = int(msg["value"])
            if msg["event"] == zmq.EVENT_ACCEPTED:
                self._closed(fd, gone)  # a reused fd: its earlier connection is gone (event lost)
                key, ident = _describe(fd)
                if ident is not None and not _is_ours(ident, msg["endpoint"]):
                    key, ident = None, None  # the fd already belongs to some other socket of this process
                self.fds[fd] = (key, ident)
                if key is not None:
                    self.live[key] += 1
            elif msg["event"] == zmq.EVENT_DISCONNECTED:
                self._closed(fd, gone)
        return gone

    def drop_all(self) -> int:
        """Close every accepted connection that is still the one recorded for its fd."""
        dropped = 0
        for fd, (_key, ident) in list(self.fds.items()):
            if ident is None or _describe(fd)[1] != ident:
                continue  # closed, or the fd number now belongs to another connection
            try:
                s = socket.socket(fileno=os.dup(fd))
            except OSError:
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
                dropped += 1
            except OSError:
                pass
            finally:
                s.close()
        return dropped

    def close(self) -> None:
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.mon.close(0)


class Subscriptions:
    """The mfvan topics applied on the XPUB, as distinct topics per peer.

    Why this shape: XPUB_MANUAL hands the engine every subscribe *message* (a peer may repeat
    one 4,200 times), but when a peer leaves libzmq sends one unsubscription per distinct
    topic and without saying whose. Counting messages against one global cap let a single
    anonymous peer fill it, and the cap stayed full after it left. Here a topic counts once per
    peer, a peer may hold `per_peer` distinct topics and all peers together `total`, so a peer
    can exhaust only its own share. A peer's topics are freed when its last connection closes
    (socket monitor), and topic by topic by the departure unsubscriptions where only one peer
    held the topic (a topic several peers hold stays until the last of them has gone).
    """

    def __init__(self, per_peer: int = MAX_TOPICS_PER_PEER, total: int = MAX_SUBSCRIPTIONS):
        self.per_peer = per_peer
        self.total = total
        self.by_peer: dict[str, set[bytes]] = {}
        self.holders: dict[bytes, set[str]] = {}

    def __len__(self) -> int:
        return len(self.holders)

    def add(self, peer: str, topic: bytes) -> str | None:
        """Record `topic` for `peer`; returns why it is refused, or None (apply it)."""
        held = self.by_peer.get(peer, set())
        if topic in held:
            return None  # a repeat (or the same peer's second connection): applied, not counted again
        if len(held) >= self.per_peer:
            return f"this peer already holds {self.per_peer} topics"
        if topic not in self.holders and len(self.holders) >= self.total:
            return f"{self.total} distinct topics are held in all"
        self.by_peer.setdefault(peer, set()).add(topic)
        self.holders.setdefault(topic, set()).add(peer)
        return None

    def remove(self, peer: str | None, topic: bytes) -> None:
        """`peer` None: a departed peer's unsubscription, attributed when only one peer held it."""
        if peer is None:
            peers = self.holders.get(topic, ())
            if len(peers) != 1:
                return
            peer = next(iter(peers))
        held = self.by_peer.get(peer)
        if not held or topic not in held:
            return
        held.discard(topic)
        if not held:
            del self.by_peer[peer]
        peers = self.holders[topic]
        peers.discard(peer)
        if not peers:
            del self.holders[topic]

    def forget(self, peer: str) -> None:
        for t in list(self.by_peer.get(peer, ())):
            self.remove(peer, t)


def _ipc_file(endpoint: str) -> Path | None:
    path = endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else ""
    return Path(path) if path and not path.startswith("@") else None


class StopEvent(Protocol):
    def is_set(self) -> bool: ...


def default_engine_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:48] or "engine"
    return f"{host}-{os.getpid()}"


def _open(cfg: EngineConfig, kind: int, endpoint: str):
    """A socket in its own context, bound or connected through engine.wire.security when present."""
    ctx = zmq.Context()
    sock = ctx.socket(kind)
    sock.linger = 0
    if kind == zmq.XPUB:
        sock.sndhwm = cfg.pub_hwm
        # subscriptions are checked by the engine before they are applied (_drain_subscriptions)
        sock.setsockopt(zmq.XPUB_MANUAL, 1)
        # libzmq itself keeps every subscription a peer sends (even in manual mode, to undo them
        # when the peer leaves): without CURVE a peer sending one longer than any mfvan topic is
        # disconnected by the transport, which frees everything it subscribed. With CURVE the
        # same limit would refuse the handshake itself (see CURVE_XPUB_MAXMSGSIZE).
        sock.maxmsgsize = CURVE_XPUB_MAXMSGSIZE if curve_enabled(cfg.security) else MAX_SUBSCRIPTION_BYTES
        if cfg.pub_nodrop:
            sock.setsockopt(zmq.XPUB_NODROP, 1)
    else:
        sock.rcvhwm = max(cfg.pub_hwm, 4 * cfg.batching.max_batch)
        # the transport refuses (and disconnects) a peer whose frame exceeds what the protocol
        # could ever accept, so a hostile sender cannot make us buffer gigabytes before decode
        sock.maxmsgsize = max(MAX_ARRAY_BYTES, MAX_HEADER_BYTES) + 1024
    auth = None
    try:
        if cfg.bind:
            auth = secure_bind(sock, endpoint, cfg.security)
        else:
            secure_connect(sock, endpoint, cfg.security)
    except BaseException:
        sock.close(0)
        ctx.term()
        raise
    return ctx, sock, auth


class MetricsPortError(OSError):
    """The engine's /metrics port cannot be bound (in use): a permanent start-up error."""


class EngineServer:
    def __init__(self, cfg: EngineConfig, artefact: Artefact, backend: Backend):
        self.cfg = cfg
        self.artefact = artefact
        self.backend = backend
        self.engine_id = cfg.engine_id or default_engine_id()
        self.labels = list(artefact.labels)
        self.size = artefact.crop_size
        self.heatmap_names = tuple(artefact.manifest.output.heatmap_names)
        self.max_batch = min(cfg.batching.max_batch, backend.max_batch)
        self.max_wait_s = cfg.batching.max_wait_ms / 1000.0
        self.metrics = EngineMetrics(self.engine_id, self.max_batch)
        self.ratelog = RateLimitedLog(log)
        self._hb_seq = 0
        self._since_trim = 0  # messages received since the heap was last trimmed
        self._last_message = 0.0  # monotonic time of the last message received
        self.subs = Subscriptions()
        self._conns: dict[str, Connections] = {}  # "pairs"/"pub" -> monitor of a bound socket
        self._guards: dict[str, Guard] = {}  # "pairs"/"pub" -> allow-list in force there
        self._ipc: list[tuple[Path, int]] = []  # ipc socket files we bound (path, inode)
        self._reload = False
        m = artefact.manifest
        # announced in every engine Status: subscribers learn the class list and model identity
        self.model_info = ModelInfo(name=m.model_name, sha256=artefact.identity, labels=tuple(self.labels),
                                    heatmap_names=self.heatmap_names, crop_size=self.size, backend=backend.name,
                                    precision=backend.precision, device=str(backend.device))
        self._closers: list = []

    # -- sockets -----------------------------------------------------------------------------
    def open(self) -> None:
        ctx_in, self.pull, auth_in = _open(self.cfg, zmq.PULL, self.cfg.pair_endpoint)
        self._closers = [a for a in (auth_in,) if a is not None] + [ctx_in]
        try:
            ctx_out, self.pub, auth_out = _open(self.cfg, zmq.XPUB, self.cfg.pub_endpoint)
        except BaseException:
            self.pub = None
            self.close()
            raise
        self._closers = [a for a in (auth_in, auth_out) if a is not None] + [ctx_in, ctx_out]
        for name, sock, endpoint, guard in (("pairs", self.pull, self.cfg.pair_endpoint, auth_in),
                                            ("pub", self.pub, self.cfg.pub_endpoint, auth_out)):
            if guard is not None:
                self._guards[name] = guard
            if self.cfg.bind:
                self._conns[name] = Connections(sock)
                for path in filter(None, map(_ipc_file, split_endpoints(endpoint))):
                    try:
                        self._ipc.append((path, path.stat().st_ino))
                    except OSError:
                        pass
        if self.cfg.metrics_port:
            try:
                self._http = self.metrics.serve(self.cfg.metrics_port)
            except OSError as exc:  # the port is taken: close the sockets (and ipc files) just bound
                self.close()
                raise MetricsPortError(f"engine cannot serve /metrics on port {self.cfg.metrics_port}: "
                                       f"{exc.strerror or exc} (engine.metrics_port; 0 = off)") from exc

    def close(self) -> None:
        for conns in self._conns.values():
            conns.close()
        self._conns = {}
        for sock in (getattr(self, "pull", None), getattr(self, "pub", None)):
            if sock is not None:
                sock.close(0)
        for path, inode in self._ipc:  # ours only: another engine may have bound the path since
            try:
                if path.stat().st_ino == inode:
                    path.unlink()
            except OSError:
                pass
        self._ipc = []
        for c in self._closers:
            if isinstance(c, zmq.Context):
                c.term()
            else:
                c.stop()
        http = getattr(self, "_http", None)
        if http is not None:
            http.close()
        self.backend.close()

    def _send(self, frames: list, what: str) -> bool:
        try:
            self.pub.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            self.metrics.drop("pub_full")
            self.ratelog.warning("pub_full", "a subscriber's queue is full (pub_hwm=%d): %s dropped", self.cfg.pub_hwm, what)
            return False

    # -- messages ----------------------------------------------------------------------------
    def handle(self, frames: list, pending: list) -> None:
        try:
            _, header, arrays = decode(frames, has_topic=False)
        except ProtocolError as exc:
            self.metrics.drop(exc.reason)
            self.ratelog.warning(exc.reason, "dropped a bad message: %s", exc)
            return
        if isinstance(header, Pair):
            shape = tuple(header.crop.shape)
            if shape != (self.size, self.size, 3):
                self.metrics.drop("crop_size")
                self.ratelog.warning(
                    "crop_size", "dropped a %s pair from %s: the model takes %dx%d crops (set faces.crop_size)",
                    shape, header.camera, self.size, self.size,
                )
                return
            self.metrics.pairs_in.inc()
            self.metrics.counts["pairs_in"] += 1
            pending.append((header, arrays[0], arrays[1], time.perf_counter()))
        elif isinstance(header, Macro):
            if self._send(encode(header, (), topic(TOPIC_MACRO, header.camera)), "macro event"):
                self.metrics.republished.labels(kind="macro").inc()
        elif isinstance(header, Status):
            if self._send(encode(header, (), topic(TOPIC_STATUS, header.component)), "status"):
                self.metrics.republished.labels(kind="status").inc()
        else:
            self.metrics.drop("unexpected")
            self.ratelog.warning("unexpected", "dropped a %s on the pair channel", type(header).__name__)

    def infer(self, pending: list) -> None:
        n = len(pending)
        # the artefact's own pre-processing: motion-form models get the onset -> apex flow
        onset, apex = pair_inputs([p[1] for p in pending], [p[2] for p in pending], self.artefact.manifest)
        t0 = time.perf_counter()
        try:
            probs, heat = self.backend.infer(onset, apex)
            check_outputs(self.artefact, probs, heat, n)
        except Exception as exc:  # noqa: BLE001 - a failed batch is counted, the engine goes on
            for _ in range(n):
                self.metrics.drop("inference")
            self.ratelog.warning("inference", "inference failed for a batch of %d: %s", n, exc)
            return
        self.metrics.infer_seconds.observe(time.perf_counter() - t0)
        self.metrics.batch_size.observe(n)
        inferred = now_ns()
        sha = self.artefact.identity  # the model file and what the manifest says it means
        crops = self.cfg.security.publish_crops
        for i, (hdr, _on, ap, t_recv) in enumerate(pending):
            p = probs[i]
            heatmap = upsample_heatmaps(heat[i], self.size, self.cfg.heatmap_dtype)
            apex_crop = np.ascontiguousarray(ap) if crops else None
            result = Result(
                camera=hdr.camera,
                track=hdr.track,
                seq=hdr.seq,
                label=self.labels[int(np.argmax(p))],
                probs={name: float(p[j]) for j, name in enumerate(self.labels)},
                onset_index=hdr.onset_index,
                apex_index=hdr.apex_index,
                offset_index=hdr.offset_index,
                onset_ts_ns=hdr.onset_ts_ns,
                apex_ts_ns=hdr.apex_ts_ns,
                offset_ts_ns=hdr.offset_ts_ns,
                duration_ns=hdr.offset_ts_ns - hdr.onset_ts_ns,
                spotted_ns=hdr.spotted_ns,
                inferred_ns=inferred,
                published_ns=now_ns(),
                engine_id=self.engine_id,
                model_sha=sha,
                heatmap=array_spec(heatmap),
                heatmap_names=self.heatmap_names,
                score=hdr.score,
                apex_crop=array_spec(apex_crop) if apex_crop is not None else None,
            )
            try:
                frames = encode_result(result, heatmap, apex_crop)
            except (ValueError, OverflowError, msgspec.EncodeError) as exc:
                # the decoder's checks should make this unreachable; one pair must never stop the engine
                self.metrics.drop("encode")
                self.ratelog.warning("encode", "dropped the result of %s seq %d: %s", hdr.camera, hdr.seq, exc)
                continue
            if self._send(frames, "result"):
                self.metrics.results_out.inc()
                self.metrics.counts["results_out"] += 1
                self.metrics.latency_seconds.observe(time.perf_counter() - t_recv)

    # -- liveness ----------------------------------------------------------------------------
    def heartbeat(self) -> None:
        self._hb_seq += 1
        hb = Heartbeat(component=self.engine_id, seq=self._hb_seq, ts_ns=now_ns())
        self._send(encode(hb, (), topic(TOPIC_HEARTBEAT, self.engine_id)), "heartbeat")

    def status(self, state: str) -> None:
        b = self.backend
        st = Status(
            component=self.engine_id,
            state=state,
            ts_ns=now_ns(),
            counters=dict(self.metrics.counts),
            detail=f"{b.name}/{b.precision} on {b.device}, model {self.artefact.identity[:12]}",
            model=self.model_info,
        )
        self._send(encode(st, (), topic(TOPIC_STATUS, self.engine_id)), "status")

    def _drain_subscriptions(self) -> None:
        """XPUB (manual mode) hands us every (un)subscribe; only valid mfvan topics are applied.

        Why: libzmq stores any subscription a peer sends, so a peer subscribing to random
        topics grows the engine's memory without bound (≈100 MB per 10,000 topics of 300 B)
        while none of them can ever match. A topic is applied only when it can match an mfvan
        topic (a prefix of `label/`, `macro/`, `status/`, `hb/`, or one of those plus a name of
        1..64 bytes, with or without its trailing slash), within the peer's share and the total
        (`Subscriptions`). Unsubscriptions of what was never applied are ignored, not counted.
        """
        for _ in range(10_000):  # bounded: heartbeats and batches must not wait on a flood
            try:
                frames = self.pub.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            msg = frames[0].bytes if len(frames) == 1 else b""
            if msg[:1] == b"\x00" and valid_topic(msg[1:]):
                peer = _peer_of(frames[0])
                if peer is not None:
                    self.pub.setsockopt(zmq.UNSUBSCRIBE, msg[1:])  # applies to the pipe it came from
                self.subs.remove(peer, msg[1:])
            elif msg[:1] == b"\x00":
                continue  # never applied: nothing to undo (libzmq reports junk topics on exit too)
            elif msg[:1] != b"\x01" or not valid_topic(msg[1:]):
                self._reject_subscription(msg)
                continue
            else:
                why = self.subs.add(_peer_of(frames[0]) or "", msg[1:])
                if why is not None:
                    self._reject_subscription(msg, why)
                    continue
                self.pub.setsockopt(zmq.SUBSCRIBE, msg[1:])  # applies to the pipe it came from
        self.metrics.subscriptions.set(len(self.subs))

    def _housekeeping(self) -> None:
        """Peers that left free their topics; a revoked allow-list key closes the connections."""
        self._drain_subscriptions()  # first: what a departed peer sent before it left
        for name, conns in self._conns.items():
            gone = conns.poll()
            if name == "pub":
                for peer in gone:
                    self.subs.forget(peer)
        self.metrics.subscriptions.set(len(self.subs))
        reload, self._reload = self._reload, False
        for name, guard in self._guards.items():
            if reload:
                guard.allow.reload()
            removed = guard.allow.refresh()
            if removed:
                conns = self._conns.get(name)
                n = conns.drop_all() if conns is not None else 0
                log.warning("allow-list %s: %d key(s) removed; closed %d %s connection(s) so every client "
                            "authenticates again", guard.allow.folder, len(removed), n, name)

    def _reject_subscription(self, msg: bytes, why: str = "not an mfvan topic") -> None:
        self.metrics.subscriptions_rejected.inc()
        self.metrics.counts["subscriptions_rejected"] += 1
        self.ratelog.warning("subscription", "refused a subscription (%s): %r", why, msg[:40])

    # -- the loop ----------------------------------------------------------------------------
    def serve(self, stop_event: StopEvent) -> int:
        poller = zmq.Poller()
        poller.register(self.pull, zmq.POLLIN)
        poller.register(self.pub, zmq.POLLIN)
        pending: list = []
        deadline: float | None = None
        next_hb = time.monotonic()
        next_status = next_hb + STATUS_EVERY_S
        next_housekeeping = time.monotonic()
        restore_hup = None
        if self._guards and threading.current_thread() is threading.main_thread():
            # SIGHUP re-reads the allow-list now (changes are also noticed by themselves)
            restore_hup = signal.signal(signal.SIGHUP, lambda *_: setattr(self, "_reload", True))
        self.metrics.up.set(1)
        self.status("running")
        log.info(
            "engine %s serving %s (%s/%s on %s): PULL %s, PUB %s",
            self.engine_id, self.artefact.folder, self.backend.name, self.backend.precision,
            self.backend.device, self.cfg.pair_endpoint, self.cfg.pub_endpoint,
        )
        while not stop_event.is_set():
            now = time.monotonic()
            wait = min(0.1, next_hb - now, (deadline - now) if deadline is not None else 0.1)
            events = dict(poller.poll(max(0.0, wait) * 1000.0))
            if self.pub in events:
                self._drain_subscriptions()
            if self.pull in events:
                # bounded drain: a flood of messages cannot starve heartbeats or the batch deadline
                for _ in range(4 * self.max_batch):
                    if len(pending) >= self.max_batch:
                        break
                    try:
                        frames = self.pull.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._since_trim += 1
                    self._last_message = time.monotonic()
                    self.handle(frames, pending)
                    if pending and deadline is None:
                        deadline = time.monotonic() + self.max_wait_s
            if pending and (len(pending) >= self.max_batch or time.monotonic() >= deadline):
                self.infer(pending)
                pending = []
                deadline = None
            now = time.monotonic()
            if now >= next_hb:
                self.heartbeat()
                next_hb = now + self.cfg.heartbeat_s
            if now >= next_status:
                self.status("running")
                next_status = now + STATUS_EVERY_S
            if now >= next_housekeeping:
                self._housekeeping()
                next_housekeeping = now + HOUSEKEEPING_S
            if (self._since_trim >= TRIM_AFTER_MESSAGES and not pending
                    and now - self._last_message >= TRIM_IDLE_S):
                self._since_trim = 0  # idle after a burst: nothing waits while it trims
                if release_freed_memory():
                    self.metrics.trims.inc()
                    self.metrics.counts["trims"] += 1
        if restore_hup is not None:
            signal.signal(signal.SIGHUP, restore_hup)
        if pending:
            self.infer(pending)
        self.status("stopping")
        self.metrics.up.set(0)
        return 0


def start(cfg: EngineConfig) -> EngineServer:
    """Load + verify the artefact, open the backend (warm), bind the sockets. Raises on failure."""
    artefact = load_artefact(cfg.artefact)
    backend = load_backend(artefact, cfg.backend, cfg.precision, threads=cfg.intra_op_threads)
    s = artefact.crop_size
    zeros = np.zeros((1, 3, s, s), np.float32)
    probs, heat = backend.infer(zeros, zeros)  # warm-up, and the outputs must fit the manifest
    check_outputs(artefact, probs, heat, 1)
    server = EngineServer(cfg, artefact, backend)
    server.open()  # on failure it closes what it opened, backend included
    return server


def run(cfg: EngineConfig, stop_event: StopEvent) -> int:
    """Serve until `stop_event` is set. 0 after a clean stop, 2 when the engine cannot start."""
    mmap_large_buffers()  # logging, signals and faulthandler: engine/process.py, set up by the caller
    try:
        server = start(cfg)
    except (ArtefactError, BackendUnavailable, SecurityError) as exc:
        log.error("engine cannot start: %s", exc)
        return 2
    except zmq.ZMQError as exc:
        log.error("engine cannot open %s / %s: %s", cfg.pair_endpoint, cfg.pub_endpoint, exc)
        return 2
    except MetricsPortError as exc:
        log.error("%s", exc)
        return 2
    try:
        return server.serve(stop_event)
    finally:
        server.close()


def run_json(cfg_json: str, stop_event: StopEvent) -> int:
    """`run` for a spawned child (`mfvan-streamd`'s engine): the config crosses as JSON, not a pickle."""
    return run(EngineConfig.model_validate_json(cfg_json), stop_event)
