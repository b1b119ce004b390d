"""`mfvan-web`: subscribe to an engine's PUB, serve its messages as JSON over WebSocket and a
live dashboard over HTTP (aiohttp).

    mfvan-web --endpoint tcp://127.0.0.1:5556 --port 8765      # then open http://127.0.0.1:8765/

Why this shape:
- One thread owns the ZeroMQ SUB socket (engine.wire.client.Subscriber: validated, counted,
  sequence gaps tracked) and turns each message into its JSON text there, PNGs included, so the
  event loop only fans strings out. The SUB socket is read as fast as messages come whatever the
  browsers do: a browser can never push back on the engine.
- Each WebSocket client has a bounded queue; when it is full the oldest message is dropped and
  counted (sent to that client in its `bridge` messages and summed in /api/state), so a slow
  browser loses its own old messages and nothing else.
- A token guards /ws and /api/ when set, and must be set to bind beyond loopback; a WebSocket
  whose Origin is another site is refused unless listed in `allow_origins` (a web page must not
  read results through the interviewer's browser). Static files carry no data and need no token.
- Health is judged here, once a second, from what arrives: an engine whose heartbeats stop (or a
  streamer whose status stops) for `stale_s` is unhealthy, so a killed engine shows as such
  although it could not say so itself.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import json
import logging
import signal
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import msgspec
import zmq
from aiohttp import WSMsgType, web

from engine.config.cli import add_config_args, config_from_args
from engine.process import setup_logging
from engine.web.config import WebConfig
from engine.web.translate import to_json
from engine.wire import protocol as P
from engine.wire.client import Subscriber
from engine.wire.security import SecurityError

log = logging.getLogger("mfvan.web")
STATIC = Path(__file__).with_name("static")
KINDS = ("result", "macro", "status", "hb")
_ENC = msgspec.json.Encoder()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Client:
    """One WebSocket peer: what it asked for, its bounded queue, and what it lost."""

    def __init__(self, ws: web.WebSocketResponse, cameras: set[str], kinds: set[str], maxlen: int):
        self.ws = ws
        self.cameras = cameras
        self.kinds = kinds
        self.queue: deque[str] = deque(maxlen=maxlen)
        self.wake = asyncio.Event()
        self.dropped = 0
        self.sent = 0

    def wants(self, msg: dict) -> bool:
        if msg["type"] not in self.kinds:
            return False
        cam = msg.get("camera")
        return not self.cameras or cam is None or cam in self.cameras

    def offer(self, text: str) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest on append
        self.queue.append(text)
        self.wake.set()

    async def pump(self) -> None:
        while not self.ws.closed:
            await self.wake.wait()
            self.wake.clear()
            while self.queue and not self.ws.closed:
                await self.ws.send_str(self.queue.popleft())
                self.sent += 1


class Hub:
    """State shared by the handlers: the clients, recent history, last status/heartbeat per component."""

    def __init__(self, cfg: WebConfig):
        self.cfg = cfg
        self.clients: set[Client] = set()
        self.history: deque[tuple[dict, str]] = deque(maxlen=max(1, cfg.history))
        self.status: dict[str, tuple[dict, str]] = {}  # component -> (message, text)
        self.beats: dict[str, tuple[dict, str]] = {}
        self.seen_ns: dict[str, int] = {}  # component -> local receive time of its last status or hb
        self.dropped_total = 0
        self.messages = Counter()
        self.upstream = {"received": 0, "invalid": {}, "missing": 0, "late": 0}
        self.started_ns = time.time_ns()

    def publish(self, msg: dict, text: str) -> None:
        """Called in the event loop for every upstream message (from the subscriber thread)."""
        kind = msg["type"]
        self.messages[kind] += 1
        if kind in ("result", "macro") and self.cfg.history:
            self.history.append((msg, text))
        elif kind == "status":
            self.status[msg["component"]] = (msg, text)
            self.seen_ns[msg["component"]] = msg["received_ns"]
        elif kind == "hb":
            self.beats[msg["component"]] = (msg, text)
            self.seen_ns[msg["component"]] = msg["received_ns"]
        for c in self.clients:
            if c.wants(msg):
                before = c.dropped
                c.offer(text)
                self.dropped_total += c.dropped - before

    def health(self) -> dict[str, dict]:
        """Per component: is it alive? Engines by heartbeat, streamers by status."""
        now = time.time_ns()
        out = {}
        for comp in sorted(set(self.status) | set(self.beats)):
            st = self.status.get(comp, ({}, ""))[0]
            age = (now - self.seen_ns.get(comp, now)) / 1e9
            state = st.get("state", "unknown")
            engine = comp in self.beats or st.get("model") is not None
            stopped = state == "stopping"  # said goodbye: stopped on purpose, not down
            if stopped and age > 600:
                continue  # long gone: off the dashboard
            healthy = age < self.cfg.stale_s and state in ("running", "starting", "unknown")
            out[comp] = {"component": comp, "role": "engine" if engine else "streamer", "state": state,
                         "age_s": round(age, 2), "healthy": healthy, "stopped": stopped,
                         "hb_seq": self.beats.get(comp, ({}, ""))[0].get("seq"),
                         "why": "" if healthy else "stopped" if stopped else
                         (f"silent for {age:.1f} s" if age >= self.cfg.stale_s else state)}
        return out

    def bridge_message(self, client: Client | None) -> dict:
        return {"type": "bridge", "ts_ns": time.time_ns(), "protocol": P.MAGIC.decode(), "clients": len(self.clients),
                "dropped": client.dropped if client else self.dropped_total, "dropped_total": self.dropped_total,
                "upstream": self.upstream, "messages": dict(self.messages), "health": self.health(),
                "crops": self.cfg.security.publish_crops, "stale_s": self.cfg.stale_s}


def _subscribe(cfg: WebConfig, hub: Hub, loop: asyncio.AbstractEventLoop, stop: threading.Event,
               sub: Subscriber) -> None:
    """The SUB thread: receive, translate (PNG encoding included) and hand text to the loop."""
    crops = cfg.security.publish_crops
    try:
        while not stop.is_set():
            d = sub.recv(timeout_ms=200)
            hub.upstream = {"received": sub.received, "invalid": dict(sub.invalid), "missing": sub.sequences.missing,
                            "late": sub.sequences.late}
            if d is None:
                continue
            try:
                msg = to_json(d, crops)
                text = _ENC.encode(msg).decode()
            except (ValueError, cv2.error) as exc:  # counted like any other bad message
                sub.invalid["bridge"] += 1
                log.warning("cannot translate a %s: %s", d.kind, exc)
                continue
            loop.call_soon_threadsafe(hub.publish, msg, text)
    finally:
        sub.close()


def _authorised(request: web.Request, token: str) -> bool:
    if not token:
        return True
    given = request.query.get("token", "")
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        given = auth[len("Bearer "):]
    return hmac.compare_digest(given.encode(), token.encode())


def _origin_allowed(request: web.Request, allowed: list[str]) -> bool:
    origin = request.headers.get("Origin")
    if not origin:
        return True  # not a browser page (a script, curl, Node): the token decides
    return urlsplit(origin).netloc == request.host or "*" in allowed or origin.rstrip("/") in allowed


def make_app(cfg: WebConfig, hub: Hub) -> web.Application:
    app = web.Application()

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        if not _authorised(request, cfg.token):
            raise web.HTTPUnauthorized(text="token required (?token= or Authorization: Bearer)")
        if not _origin_allowed(request, [o.rstrip("/") for o in cfg.allow_origins]):
            raise web.HTTPForbidden(text="cross-origin WebSocket refused (allow it with allow_origins)")
        if len(hub.clients) >= cfg.max_clients:
            raise web.HTTPServiceUnavailable(text=f"{cfg.max_clients} clients already")
        cams = {c for c in request.query.get("cameras", "").split(",") if c}
        kinds = {k for k in request.query.get("kinds", ",".join(KINDS)).split(",") if k in KINDS}
        ws = web.WebSocketResponse(heartbeat=15, max_msg_size=4096)
        await ws.prepare(request)
        client = Client(ws, cams, kinds, cfg.client_queue)
        hello = {"type": "hello", "ts_ns": time.time_ns(), "protocol": P.MAGIC.decode(), "endpoint": cfg.endpoint, "kinds": sorted(kinds),
                 "cameras": sorted(cams), "crops": cfg.security.publish_crops, "stale_s": cfg.stale_s}
        await ws.send_str(json.dumps(hello))
        for msg, text in [*hub.status.values(), *hub.beats.values(), *hub.history]:
            if client.wants(msg):
                client.offer(text)
        hub.clients.add(client)
        pump = asyncio.ensure_future(client.pump())
        try:
            async for m in ws:  # browsers send nothing we act on; reading keeps pings answered
                if m.type == WSMsgType.ERROR:
                    break
        finally:
            hub.clients.discard(client)
            pump.cancel()
        return ws

    async def state(request: web.Request) -> web.Response:
        if not _authorised(request, cfg.token):
            raise web.HTTPUnauthorized(text="token required")
        body = hub.bridge_message(None)
        body["status"] = {k: v[0] for k, v in hub.status.items()}
        body["recent"] = [m for m, _ in hub.history][-20:]
        return web.Response(text=_ENC.encode(_lite(body)).decode(), content_type="application/json")

    async def healthz(_request: web.Request) -> web.Response:
        h = hub.health()
        ok = bool(h) and all(c["healthy"] for c in h.values() if c["role"] == "engine")
        return web.json_response({"ok": ok, "components": h}, status=200 if ok else 503)

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", index)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/api/state", state)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static/", STATIC)
    return app


def _lite(body: dict) -> dict:
    """/api/state without the images (they are for the WebSocket)."""
    out = dict(body)
    out["recent"] = [{k: v for k, v in m.items() if not k.endswith("_png") and k != "heatmaps"} for m in body["recent"]]
    return out


async def _bridge_ticker(hub: Hub) -> None:
    while True:
        await asyncio.sleep(1.0)
        for c in list(hub.clients):
            c.offer(json.dumps(hub.bridge_message(c)))


async def serve(cfg: WebConfig, stop: asyncio.Event, on_ready=None) -> int:
    """Run until `stop` is set. Returns 0, or 2 when the PUB or the port cannot be opened."""
    loop = asyncio.get_running_loop()
    hub = Hub(cfg)
    kinds = [P.TOPIC_LABEL, P.TOPIC_MACRO, P.TOPIC_STATUS, P.TOPIC_HEARTBEAT]
    try:
        sub = Subscriber(cfg.endpoint, cfg.cameras or None, kinds, cfg.security)
    except (SecurityError, ValueError, zmq.ZMQError) as exc:
        print(f"mfvan-web: cannot subscribe to {cfg.endpoint!r}: {exc}", file=sys.stderr)
        return 2
    halt = threading.Event()
    thread = threading.Thread(target=_subscribe, args=(cfg, hub, loop, halt, sub), name="mfvan-web-sub", daemon=True)
    thread.start()
    runner = web.AppRunner(make_app(cfg, hub), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    try:
        await site.start()
    except OSError as exc:
        print(f"mfvan-web: cannot listen on {cfg.host}:{cfg.port}: {exc}", file=sys.stderr)
        halt.set()
        await runner.cleanup()
        return 2
    port = site._server.sockets[0].getsockname()[1]  # the real port when cfg.port is 0
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    url = f"http://{host}:{port}/" + (f"?token={cfg.token}" if cfg.token else "")
    print(f"mfvan-web: dashboard at {url} (subscribed to {cfg.endpoint})", flush=True)
    if on_ready:
        on_ready(url, hub)
    ticker = asyncio.ensure_future(_bridge_ticker(hub))
    try:
        await stop.wait()
    finally:
        ticker.cancel()
        halt.set()
        for c in list(hub.clients):
            await c.ws.close()
        await runner.cleanup()
        await loop.run_in_executor(None, thread.join, 2.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mfvan-web", description="WebSocket/JSON bridge and live dashboard for an mfvan PUB endpoint.")
    p.add_argument("--endpoint", help="the engine's PUB endpoint (default tcp://127.0.0.1:5556)")
    p.add_argument("--camera", action="append", help="only this camera (repeatable)")
    p.add_argument("--host", help="bind address (default 127.0.0.1; beyond loopback --token is required)")
    p.add_argument("--port", type=int, help="HTTP/WebSocket port (default 8765; 0 = any free port)")
    p.add_argument("--token", help="token every client must present (or MFVAN_TOKEN)")
    p.add_argument("--allow-origin", action="append", help="a web origin whose pages may open the WebSocket "
                   "(repeatable; '*' = any)")
    p.add_argument("--server-key", help="server public key file (enables CURVE)")
    p.add_argument("--client-key", help="this client's secret key file (with --server-key)")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_config_args(p)
    args = p.parse_args(argv)
    over: dict = {k: getattr(args, k) for k in ("endpoint", "host", "port", "token") if getattr(args, k) is not None}
    if args.camera:
        over["cameras"] = args.camera
    if args.allow_origin:
        over["allow_origins"] = args.allow_origin
    if args.server_key or args.client_key:
        over["security"] = {"server_public_key": args.server_key or "", "client_secret_key": args.client_key or ""}
    cfg = config_from_args(args, WebConfig, over)
    if not is_loopback(cfg.host) and not cfg.token:
        print(f"mfvan-web: binding {cfg.host} (beyond loopback) needs a token: --token or MFVAN_TOKEN", file=sys.stderr)
        return 2
    setup_logging(args.log_level)

    async def run() -> int:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        return await serve(cfg, stop)

    return asyncio.run(run())


if __name__ == "__main__":
    raise SystemExit(main())
