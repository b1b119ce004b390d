"""Shared by tests/system/test_reliability_*.py: one artefact per test session, hostile message
generators with the drop reason each must be counted under, and junk for HTTP and raw TCP.

Why expected reasons come from construction and not from `engine.wire.protocol.decode`: the decoder
is what is under test; using it as its own oracle would make the accounting check circular.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import zmq

from engine.wire import protocol as P
from engine.wire.client import Subscriber
from streamer.harness.procs import free_port, http_get, parse_metrics

CROP = 112


def session_artefact(tmp_path_factory) -> Path:
    """A real artefact (random-weight MFVAN → ONNX), built once per pytest session."""
    from tests.helpers.engine import build

    root = tmp_path_factory.getbasetemp() / "reliability-artefact"
    out = root / "artefact"
    if not (out / "manifest.json").exists():
        import torch

        torch.set_num_threads(1)
        build(root)
    return out


def pair_header(seq: int, camera: str = "probe", shape: tuple[int, ...] = (CROP, CROP, 3), dtype: str = "uint8",
                **over) -> P.Pair:
    now = P.now_ns()
    fields = dict(camera=camera, track=1, seq=seq, onset_index=10, apex_index=20, offset_index=30, onset_ts_ns=now,
                  apex_ts_ns=now, offset_ts_ns=now, spotted_ns=now, score=0.5, crop=P.ArraySpec(dtype=dtype, shape=shape))
    fields.update(over)
    return P.Pair(**fields)


def good_pair(seq: int, onset: np.ndarray, apex: np.ndarray, camera: str = "probe") -> list[bytes]:
    frames = P.encode_pair(pair_header(seq, camera), onset, apex)
    return [bytes(f) for f in frames]


def _raw_header(**fields) -> bytes:
    """msgpack of a dict: lets a test write headers the structs would refuse to build."""
    return msgspec.msgpack.encode(fields)


class Hostile:
    """Deterministic hostile traffic for the pair channel: `next()` → (frames, reason | None).

    reason is the engine drop label the message must be counted under; None for bit-flip
    mutations of valid messages, whose fate (dropped for some reason, or still valid) is only
    checked through the total: every message ends up counted somewhere.
    """

    KINDS = ("version", "frames", "size", "array", "nan", "header_trunc", "random", "header_random",
             "header_types", "schema", "crop_size", "unexpected", "mutation")

    def __init__(self, onset: np.ndarray, apex: np.ndarray, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.on, self.ap = onset.tobytes(), apex.tobytes()
        self.good = good_pair(0, onset, apex)
        self.sent: Counter[str] = Counter()  # by expected reason ("?" for mutations)
        self.kinds: Counter[str] = Counter()

    def _bytes(self, n: int) -> bytes:
        return self.rng.integers(0, 256, n, dtype=np.uint8).tobytes()

    def next(self) -> tuple[list[bytes], str | None]:
        kind = self.KINDS[int(self.rng.integers(len(self.KINDS)))]
        frames, reason = getattr(self, f"_{kind}")()
        self.kinds[kind] += 1
        self.sent[reason or "?"] += 1
        return frames, reason

    # -- the kinds --------------------------------------------------------------------------------
    def _version(self):
        magic = [b"MFV0", b"MFV2", b"mfv1", b"", b"MFV1\x00", self._bytes(4)][int(self.rng.integers(6))]
        if magic == P.MAGIC:
            magic = b"XXXX"
        return [magic, self.good[1], self.on, self.ap], "version"

    def _frames(self):
        choice = int(self.rng.integers(4))
        if choice == 0:
            return [P.MAGIC], "frames"
        if choice == 1:  # a Pair takes exactly two crops
            return [P.MAGIC, self.good[1], self.on], "frames"
        if choice == 2:
            return [P.MAGIC, self.good[1], self.on, self.ap, self.ap], "frames"
        n = int(self.rng.integers(P.MAX_FRAMES + 3, P.MAX_FRAMES + 12))  # past the frame limit
        return [P.MAGIC, self.good[1]] + [b"x"] * (n - 2), "frames"

    def _size(self):
        if self.rng.integers(2):  # huge declared shape, tiny payload: refused before any allocation
            h = pair_header(1, shape=(4096, 4096, 3))
            return [P.MAGIC, msgspec.msgpack.encode(h), b"\x00" * 16, b"\x00" * 16], "size"
        big = "c" * (P.MAX_HEADER_BYTES + 16)  # header past its limit
        return [P.MAGIC, _raw_header(type="pair", camera=big), self.on, self.ap], "size"

    def _array(self):
        choice = int(self.rng.integers(3))
        if choice == 0:  # dims out of range
            shape = [(5000, 5000, 3), (0, 112, 3), (-1, 112, 3), (112, 112, 3, 1, 1)][int(self.rng.integers(4))]
            raw = _raw_header(**{**msgspec.to_builtins(pair_header(1)), "crop": {"dtype": "uint8", "shape": list(shape)}})
            reason = "array" if len(shape) == 3 else "schema"
            return [P.MAGIC, raw, b"\x00" * 8, b"\x00" * 8], reason
        if choice == 1:  # bytes do not match the declared shape
            cut = int(self.rng.integers(1, len(self.on)))
            return [P.MAGIC, self.good[1], self.on[:cut], self.ap], "array"
        return [P.MAGIC, self.good[1], self.on, self.ap + b"\x00"], "array"

    def _nan(self):
        """Float arrays with NaN/inf: only a Result carries float arrays; it must die on the values."""
        dtype = ("float16", "float32")[int(self.rng.integers(2))]
        heat = self.rng.random((4, 8, 8)).astype(dtype)
        heat.flat[int(self.rng.integers(heat.size))] = (np.nan, np.inf, -np.inf)[int(self.rng.integers(3))]
        hdr = P.Result(camera="x", track=1, seq=1, label="a", probs={"a": 1.0}, onset_index=1, apex_index=2,
                       offset_index=3, onset_ts_ns=1, apex_ts_ns=1, offset_ts_ns=1, duration_ns=0, spotted_ns=1, inferred_ns=1, published_ns=1, engine_id="e", model_sha="s",
                       heatmap=P.array_spec(heat), heatmap_names=("fused", "scale1", "scale2", "scale3"))
        return [P.MAGIC, msgspec.msgpack.encode(hdr), heat.tobytes()], "array"

    def _header_trunc(self):
        h = self.good[1]
        return [P.MAGIC, h[: int(self.rng.integers(0, len(h)))], self.on, self.ap], "header"

    def _random(self):
        n = int(self.rng.integers(1, P.MAX_FRAMES + 6))
        frames = [self._bytes(int(self.rng.integers(0, 64))) for _ in range(n)]
        if n < 2 or n > P.MAX_FRAMES + 2:
            return frames, "frames"
        if frames[0] == P.MAGIC:
            frames[0] = b"nope"
        return frames, "version"

    def _header_random(self):
        raw = self._bytes(int(self.rng.integers(1, 200)))
        return [P.MAGIC, raw, self.on, self.ap], "header"

    def _header_types(self):
        base = msgspec.to_builtins(pair_header(1))
        choice = int(self.rng.integers(5))
        if choice == 0:
            base["camera"] = 5
        elif choice == 1:
            base["type"] = "pickle"  # an unknown tag
        elif choice == 2:
            base["evil"] = "__reduce__"  # an unknown field
        elif choice == 3:
            base["seq"] = "1"  # a string where an int belongs
        else:
            del base["crop"]
        return [P.MAGIC, msgspec.msgpack.encode(base), self.on, self.ap], "header"

    def _schema(self):
        choice = int(self.rng.integers(4))
        if choice == 0:
            h = pair_header(1, onset_index=50, apex_index=20)
        elif choice == 1:
            h = pair_header(1, camera="../../etc")
        elif choice == 2:
            h = pair_header(1, dtype="float32")
        else:
            h = pair_header(1, camera="")
        return [P.MAGIC, msgspec.msgpack.encode(h), self.on, self.ap], "schema"

    def _crop_size(self):
        s = int(self.rng.choice([32, 64, 96, 128]))
        crop = np.zeros((s, s, 3), np.uint8)
        return [bytes(f) for f in P.encode_pair(pair_header(1, shape=(s, s, 3)), crop, crop)], "crop_size"

    def _unexpected(self):
        return [bytes(f) for f in P.encode(P.Heartbeat(component="x", seq=1, ts_ns=1))], "unexpected"

    def _mutation(self):
        frames = list(self.good)
        i = int(self.rng.integers(0, 2))  # flip bytes of the magic or the header, never of the crops
        b = bytearray(frames[i])
        for _ in range(int(self.rng.integers(1, 4))):
            b[int(self.rng.integers(len(b)))] ^= 1 << int(self.rng.integers(8))
        frames[i] = bytes(b)
        return frames, None


def junk_http(host: str, port: int, rng: np.random.Generator, n: int = 60) -> tuple[Counter[str], list]:
    """Hostile HTTP clients: random bytes, bad methods, huge request lines and headers, truncated
    requests, slow clients that send half a request and hold the connection. Returns how each
    attempt ended and the held sockets (the caller closes them after checking the server)."""
    outcomes: Counter[str] = Counter()
    held = []
    requests = [
        lambda: bytes(rng.integers(0, 256, 512, dtype=np.uint8)),
        lambda: b"BREW /metrics HTTP/1.1\r\n\r\n",
        lambda: b"GET /" + b"A" * 70_000 + b" HTTP/1.1\r\n\r\n",
        lambda: b"GET /metrics HTTP/1.1\r\n" + b"X-Junk: y\r\n" * 200 + b"\r\n",
        lambda: b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"z" * 100_000 + b"\r\n\r\n",
        lambda: b"GET /healthz HTTP/9.9\r\n\r\n",
        lambda: b"POST /metrics HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nabc",
        lambda: b"GET /../../etc/passwd HTTP/1.0\r\n\r\n",
        lambda: b"\r\n\r\n\r\n",
        lambda: b"GET /metrics HTTP/1.1\r\nHost:",  # truncated, connection then closed
    ]
    for i in range(n):
        payload = requests[i % len(requests)]()
        slow = i % 7 == 6  # a slow client: half a request, connection held open
        s = socket.create_connection((host, port), timeout=5)
        try:
            s.sendall(payload[: len(payload) // 2] if slow else payload)
            if slow:
                held.append(s)
                outcomes["held"] += 1
                continue
            s.shutdown(socket.SHUT_WR)
            reply = s.recv(64)
            outcomes["replied" if reply else "closed"] += 1
        except OSError:  # the server may cut a hostile client off at any point
            outcomes["reset"] += 1
        finally:
            if not slow:
                s.close()
    time.sleep(0.3)
    return outcomes, held


def junk_tcp(host: str, port: int, rng: np.random.Generator, n: int = 30) -> None:
    """Bytes that are not ZMTP at a ZeroMQ TCP port: random, an HTTP request, a ZMTP greeting
    with a bogus version, a greeting then a frame announcing 2**62 bytes."""
    payloads = [
        lambda: bytes(rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8)),
        lambda: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        lambda: b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x09\x00" + b"NULL" + b"\x00" * 16,  # future ZMTP 9.0
        lambda: (b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
                 + b"\x06" + (2**62).to_bytes(8, "big") + b"x" * 64),  # valid greeting, absurd frame size
    ]
    for i in range(n):
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.sendall(payloads[i % len(payloads)]())
                s.settimeout(0.2)
                try:
                    s.recv(64)
                except (TimeoutError, ConnectionError, OSError):
                    pass
        except OSError:
            pass


def tcp_port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


class Engined:
    """`mfvan-engined` as a subprocess on TCP (or ipc) endpoints with its /metrics port."""

    def __init__(self, tmp: Path, artefact: Path, extra: list[str] | None = None, ipc: bool = False):
        if ipc:  # unix sockets: small kernel buffers, so a stalled reader shows at once
            self.pair, self.pub = f"ipc://{tmp}/pairs", f"ipc://{tmp}/pub"
        else:
            self.pair = f"tcp://127.0.0.1:{free_port()}"
            self.pub = f"tcp://127.0.0.1:{free_port()}"
        self.metrics_port = free_port()
        self.log_path = tmp / "engined.log"
        script = Path(sys.executable).with_name("mfvan-engined")
        self.cmd = [str(script), "--artefact", str(artefact), "--pair-endpoint", self.pair, "--pub-endpoint",
                    self.pub, "--metrics-port", str(self.metrics_port), "--threads", "1", "--engine-id", "hostile",
                    *(extra or [])]

    def __enter__(self) -> Engined:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, OMP_NUM_THREADS="1"))
        self.sub = Subscriber(self.pub, kinds=("label/", "hb/"))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ev = self.sub.recv(200)
            if ev is not None and ev.kind == "heartbeat":
                break
            assert self.proc.poll() is None, self.log()
        else:
            raise AssertionError(f"no heartbeat from mfvan-engined:\n{self.log()}")
        self.ctx = zmq.Context()
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.linger = 0
        self.push.connect(self.pair)
        return self

    def __exit__(self, *exc) -> None:
        self.push.close(0)
        self.ctx.term()
        self.sub.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        status, body = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        assert status == 200, body
        return parse_metrics(body)

    def drops(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for k, v in self.metrics().items():
            if k.startswith("mfvan_engine_dropped_total{"):
                out[k.split('reason="')[1].split('"')[0]] = int(v)
        return out

    def result_for(self, camera: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.sub.recv(200)
            if ev is not None and ev.kind == "result" and ev.header.camera == camera:
                return ev
        return None

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def wait_until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


