"""mfvan-web without a browser: the JSON translation (heatmaps as PNG that decode to the wire's
values, crops only when the bridge allows them), and, with real sockets, that a browser that
stops reading loses only its own oldest messages (counted) while the bridge keeps reading the
PUB and a reading client gets every message."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import zmq

from engine.web.translate import to_json
from engine.wire import protocol as P
from engine.wire.client import Delivery
from streamer.harness.procs import free_port
from tests.engine.golden import good_messages

BIN = Path(sys.executable).parent


def _delivery(name: str) -> Delivery:
    _, frames, _, _ = good_messages()[name]
    topic, header, arrays = P.decode(frames, has_topic=True)
    return Delivery(topic.decode(), header, arrays, P.now_ns())


def _png(b64: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)


def test_result_json_has_pngs_of_the_wire_values_and_crops_only_when_allowed() -> None:
    d = _delivery("result_uint8")
    msg = to_json(d, crops=True)
    assert msg["type"] == "result" and msg["offset_index"] == 1270 and msg["duration_ns"] == 350_000_000
    assert list(msg["heatmaps"]) == ["fused", "scale1", "scale2", "scale3"]
    for i, name in enumerate(msg["heatmaps"]):
        assert np.array_equal(_png(msg["heatmaps"][name]), d.heatmap[i])  # lossless, value for value
    assert _png(msg["overlay_png"]).shape == (224, 224, 3) and msg["apex_crop_png"] is None
    assert "heatmap" not in msg and "apex_crop" not in msg
    json.dumps(msg)

    d = _delivery("result_float16_crop")
    assert to_json(d, crops=False)["apex_crop_png"] is None  # the engine sent one; the bridge holds it back
    with_crop = to_json(d, crops=True)
    assert np.array_equal(_png(with_crop["apex_crop_png"]), d.apex_crop)
    fused = _png(with_crop["heatmaps"]["fused"])
    assert np.abs(fused.astype(int) - np.rint(d.heatmap[0].astype(np.float32) * 255)).max() <= 1
    assert to_json(_delivery("heartbeat"), crops=False)["type"] == "hb"
    assert list(to_json(_delivery("status_engine"), crops=False)["model"]["labels"]) == ["negative", "positive", "surprise"]


def _big_result(seq: int, rng: np.random.Generator) -> list:
    heat = rng.integers(0, 256, (4, 112, 112), dtype=np.uint8)  # noise: large PNGs, to fill socket buffers
    now = P.now_ns()
    h = P.Result(camera="cam0", track=1, seq=seq, label="a", probs={"a": 0.6, "b": 0.4}, onset_index=1, apex_index=2,
                 offset_index=3, onset_ts_ns=now, apex_ts_ns=now, offset_ts_ns=now, duration_ns=0, spotted_ns=now,
                 inferred_ns=now, published_ns=now, engine_id="e", model_sha="s", heatmap=P.array_spec(heat),
                 heatmap_names=("fused", "scale1", "scale2", "scale3"))
    return P.encode_result(h, heat)


def _stalled_websocket(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads (a frozen tab)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /ws?kinds=result HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert b"101" in s.recv(64)
    return s


def test_a_stalled_browser_loses_its_oldest_messages_and_nobody_else_waits(tmp_path: Path) -> None:
    import aiohttp

    n = 300
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.linger = 0
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub.bind(endpoint)
    port = free_port()
    cfg = tmp_path / "web.yaml"
    cfg.write_text("client_queue: 64\nhistory: 0\n")
    web = subprocess.Popen([str(BIN / "mfvan-web"), "--endpoint", endpoint, "--port", str(port), "--config", str(cfg)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stalled = None
    try:
        assert "dashboard at" in web.stdout.readline()
        stalled = _stalled_websocket(port)

        async def reader() -> list[int]:
            seqs: list[int] = []
            async with aiohttp.ClientSession() as s, s.ws_connect(f"http://127.0.0.1:{port}/ws?kinds=result") as ws:
                await ws.receive(timeout=10)  # hello

                async def consume() -> None:  # reads all the time, as a live page does
                    while len(seqs) < n:
                        msg = json.loads((await ws.receive()).data)
                        if msg["type"] == "result":  # besides them: a `bridge` message once a second
                            seqs.append(msg["seq"])

                task = asyncio.ensure_future(consume())
                await asyncio.sleep(0.5)  # the SUB subscription reaches the publisher (slow joiner)
                rng = np.random.default_rng(0)
                for i in range(n):
                    pub.send_multipart(_big_result(i + 1, rng))
                    await asyncio.sleep(0.01)  # 100/s: well within what the bridge translates
                try:
                    await asyncio.wait_for(task, 60)
                except asyncio.TimeoutError:
                    task.cancel()
            return seqs

        seqs = asyncio.run(reader())
        assert seqs == list(range(1, n + 1))  # the reading client lost nothing, in order
        state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=5).read())
        assert state["upstream"]["received"] == n and state["upstream"]["invalid"] == {}
        assert state["upstream"]["missing"] == 0
        assert state["dropped_total"] > 0  # the frozen tab's oldest messages, counted
    finally:
        if stalled is not None:
            stalled.close()
        web.terminate()
        web.wait(20)
        pub.close(0)
        ctx.term()
