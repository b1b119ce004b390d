"""`mfvan-streamd`: the supervisor. One streamer process per camera + the embedded engine.

Why this shape (DESIGN §2):
- Children are started with the `spawn` context: nothing is forked after a library (ONNX
  Runtime threads, CUDA) has been initialised in the parent.
- Every child runs in engine/process.py's skeleton (`child_entry`): the supervisor's log level
  as an argument, faulthandler, SIGINT ignored, SIGTERM a clean stop of that child alone.
- One multiprocessing Event stops everything. Shutdown is ordered: streamers first (they stop
  producing and flush their last events), then the engine (it drains its queue), each joined
  with a timeout, then terminated, then killed. SIGTERM and SIGINT both start it.
- A child that dies is restarted within a budget (max_restarts in restart_window_s); past the
  budget the daemon gives up loudly and exits non-zero, so systemd's own restart policy and
  the operator's alerting take over instead of a silent crash loop.
- /metrics (Prometheus text format: every streamer counter by camera, children up/restarts)
  and /healthz (200 only while running) on engine/metrics.py's HTTP server (the engine's too);
  sd_notify READY/STOPPING/WATCHDOG when NOTIFY_SOCKET is set.
- A replayed video ends: when every streamer has finished its clip, the engine gets
  `linger_s` to publish the last results and the daemon exits 0 by itself.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from engine.config.cli import add_config_args, config_from_args
from engine.metrics import HttpServer, metrics_app, serve_http
from engine.process import LOG_LEVELS, StopRequest, child_entry, enable_faulthandler, setup_logging
from streamer import sdnotify
from streamer.config import StreamdConfig
from streamer.worker import (
    COUNTERS,
    EXIT_CONFIG,
    EXIT_DONE,
    EXIT_PARTIAL,
    EXIT_SOURCE,
    GAUGES,
    HELP,
)

log = logging.getLogger("mfvan.streamd")


# children run engine/process.py's child_entry with one of these targets (imported in the child)
ENGINE_TARGET = "engine.server:run_json"  # (engine config JSON,)
STREAMER_TARGET = "streamer.worker:run_camera"  # (streamd config JSON, camera index), shared=, pair_endpoint=


def local_endpoint(endpoint: str) -> str:
    """Where this host reaches an endpoint it binds: `tcp://*:5556` is bound on every interface
    but cannot be connected to (the readiness check did, and crashed); the first of a list."""
    first = endpoint.split(",")[0].strip()
    if first.startswith("tcp://"):
        host, _, port = first[len("tcp://"):].rpartition(":")
        if host in ("*", "0.0.0.0"):
            return f"tcp://127.0.0.1:{port}"
        if host in ("[::]", "::", "[::0]"):
            return f"tcp://[::1]:{port}"
    return first


@dataclass
class Child:
    name: str
    kind: str  # "engine" | "streamer"
    target: str  # "module:function" for child_entry
    args: tuple
    kwargs: dict = field(default_factory=dict)
    replay: bool = False  # a streamer replaying a file: exit 0 means "clip finished"
    shared: object = None
    process: mp.process.BaseProcess | None = None
    restarts: deque = field(default_factory=deque)
    restart_total: int = 0
    restart_at: float | None = None  # a dead child waits for its backoff to end
    done: bool = False
    frames: int = -1  # the streamer's frame counter at the last check, and since when it has not moved
    frames_since: float = 0.0


class Supervisor:
    def __init__(self, cfg: StreamdConfig, engine_endpoint: str | None = None, log_level: str = "INFO"):
        self.cfg = cfg
        self.log_level = log_level  # handed to every child explicitly (spawned children inherit nothing)
        self.ctx = mp.get_context("spawn")
        self.stop_event = self.ctx.Event()
        self.state = "starting"
        self.exit_code = 0
        self._signalled = StopRequest()  # a flag, not an Event: set from a signal handler
        self.children: list[Child] = []
        self.pair_endpoint = engine_endpoint or cfg.engine.pair_endpoint
        if cfg.embedded_engine and engine_endpoint is None:
            self.children.append(Child("engine", "engine", ENGINE_TARGET, (cfg.engine.model_dump_json(),)))
        cfg_json = cfg.model_dump_json()
        for i, cam in enumerate(cfg.cameras):
            shared = self.ctx.Array("q", len(COUNTERS), lock=False)
            self.children.append(Child(f"streamer-{cam.name}", "streamer", STREAMER_TARGET, (cfg_json, i),
                                       {"shared": shared, "pair_endpoint": self.pair_endpoint},
                                       replay=cam.kind == "file", shared=shared))
        self.http: HttpServer | None = None
        self._hb = None  # the supervisor's own hb/ subscription to the embedded engine
        self._last_hb = 0.0
        self.problems: list[str] = []  # why the daemon is degraded, for the log and /healthz

    # -- lifecycle --------------------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        proc = self.ctx.Process(target=child_entry, name=child.name, daemon=False,
                                args=(child.target, self.log_level, self.stop_event, child.args, child.kwargs))
        try:
            proc.start()
        except OSError as exc:  # EMFILE, EAGAIN, ENOMEM: the host is out of something; try again later
            log.error("cannot start %s: %s; trying again in 5 s", child.name, exc)
            child.restart_at = time.monotonic() + 5.0
            return
        child.process = proc
        log.info("started %s (pid %d)", child.name, child.process.pid)

    def _wait_engine_ready(self, timeout: float = 120.0) -> bool:
        """The engine is ready when its first heartbeat arrives on the PUB endpoint."""
        from engine.wire.client import Subscriber

        engine = next((c for c in self.children if c.kind == "engine"), None)
        if engine is None:
            return True
        self._hb = sub = Subscriber(local_endpoint(self.cfg.engine.pub_endpoint), kinds=("hb/",),
                                    security=self.cfg.security)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._signalled.is_set():
            if sub.recv(timeout_ms=200) is not None:
                self._last_hb = time.monotonic()
                return True
            if engine.process is None or not engine.process.is_alive():
                log.error("engine exited with code %s before it was ready",
                          engine.process.exitcode if engine.process is not None else "(not started)")
                return False
        log.error("engine sent no heartbeat on %s within %.0f s", self.cfg.engine.pub_endpoint, timeout)
        return False

    def _check_artefact(self) -> bool:
        """Refuse a crop size the embedded engine's model cannot take (every pair would be dropped)."""
        if not any(c.kind == "engine" for c in self.children):
            return True
        from engine.artefact import ArtefactError, load_artefact

        try:
            size = load_artefact(self.cfg.engine.artefact, verify=False).crop_size
        except ArtefactError:
            return True  # the engine itself reports a broken artefact, with how to rebuild it
        if size != self.cfg.faces.crop_size:
            log.error("faces.crop_size %d does not match the engine artefact's input %d: set faces.crop_size: %d "
                      "(or build the artefact for %d)", self.cfg.faces.crop_size, size, size, self.cfg.faces.crop_size)
            return False
        return True

    def run(self) -> int:
        self._install_signals()
        if not self._check_artefact():
            self.exit_code = 2
            return self.shutdown()
        if not self._start_http():
            self.exit_code = 2
            return self.shutdown()
        for c in self.children:
            if c.kind == "engine":
                self._spawn(c)
        if not self._wait_engine_ready():
            self.exit_code = 2
            return self.shutdown()
        for c in self.children:
            if c.kind == "streamer":
                self._spawn(c)
                c.frames_since = time.monotonic()
        log.info("started: %s; results on %s", ", ".join(c.name for c in self.children), self.cfg.engine.pub_endpoint)
        wd = sdnotify.watchdog_interval_s()
        next_wd = time.monotonic()
        while not self._signalled.is_set():
            if not self._check_children():
                break
            if self.state == "starting" and not self.problems:
                # READY=1 once every source delivered frames (not when the processes were spawned)
                self.state = "running"
                sdnotify.notify(f"READY=1\nSTATUS=running {sum(c.kind == 'streamer' for c in self.children)} "
                                "streamer(s)")
                log.info("running: every source delivers frames")
            # the watchdog is fed only while everything makes progress: a hung child (SIGSTOP, a
            # dead lock) that the supervisor cannot see die ends in systemd's restart
            if wd and time.monotonic() >= next_wd and not self.problems:
                sdnotify.notify("WATCHDOG=1")
                next_wd = time.monotonic() + wd
            time.sleep(0.2)
        return self.shutdown()

    def _check_children(self) -> bool:
        """Restart dead children within the budget. False when the daemon should stop."""
        now = time.monotonic()
        for c in self.children:
            p = c.process
            if c.restart_at is not None:
                if now >= c.restart_at:
                    c.restart_at = None
                    self._spawn(c)
                continue
            if c.done or p is None or p.is_alive():
                continue
            code = p.exitcode
            if c.replay and code == EXIT_DONE:
                c.done = True
                log.info("%s finished its replay", c.name)
                continue
            if c.replay and code == EXIT_PARTIAL:  # ended early: not a success, not worth a retry
                c.done = True
                self.exit_code = self.exit_code or 1
                log.error("%s: the replay is incomplete (see above): the daemon will exit 1", c.name)
                continue
            if c.kind == "streamer" and code in (EXIT_SOURCE, EXIT_CONFIG) and c.restart_total == 0 and c.frames <= 0:
                # never delivered a frame: a missing file, an absent camera, an unusable input.
                # Retrying for a minute under /healthz 200 helped nobody: fail now, loudly.
                log.error("%s cannot start (exit %s, see the error above): not retrying", c.name, code)
                self.exit_code = 2
                return False
            now = time.monotonic()
            while c.restarts and now - c.restarts[0] > self.cfg.supervisor.restart_window_s:
                c.restarts.popleft()
            if len(c.restarts) >= self.cfg.supervisor.max_restarts:
                log.error("%s died (exit %s) %d times within %.0f s: giving up", c.name, code, len(c.restarts) + 1,
                          self.cfg.supervisor.restart_window_s)
                self.exit_code = 1
                return False
            # the first restart is immediate (a crash); repeated ones back off (a source that
            # keeps failing may come back; hammering it helps nobody)
            delay = 0.0 if not c.restarts else min(30.0, self.cfg.supervisor.backoff_s * 2 ** (len(c.restarts) - 1))
            c.restarts.append(now)
            c.restart_total += 1
            log.warning("%s died (exit %s): restart %d/%d in %.1f s", c.name, code, len(c.restarts),
                        self.cfg.supervisor.max_restarts, delay)
            c.restart_at = now + delay
            if delay == 0:
                c.restart_at = None
                self._spawn(c)
        streamers = [c for c in self.children if c.kind == "streamer"]
        down = [c.name for c in self.children if not c.done and (c.process is None or not c.process.is_alive())]
        stalled = [c.name for c in streamers if c.shared is not None and c.shared[COUNTERS.index("stalled")]]
        problems = [f"{n} down" for n in down] + [f"{n} stalled" for n in stalled] + self._progress(streamers)
        if problems != self.problems:
            if problems and self.state != "starting":
                log.warning("degraded: %s", ", ".join(problems))
            elif not problems and self.state == "degraded":
                log.info("running again")
            self.problems = problems
        if self.state != "starting":
            self.state = "degraded" if problems else "running"
        if streamers and all(c.done for c in streamers):
            log.info("every replay finished; letting the engine drain for %.1f s", self.cfg.supervisor.linger_s)
            end = time.monotonic() + self.cfg.supervisor.linger_s
            while time.monotonic() < end and not self._signalled.is_set():  # SIGTERM ends the wait
                time.sleep(0.05)
            return False
        return True

    def _progress(self, streamers: list[Child]) -> list[str]:
        """Liveness is not health: the engine must keep sending heartbeats, each streamer's frame
        counter must keep moving (a SIGSTOPped or dead-locked child is alive and does nothing)."""
        now = time.monotonic()
        out = []
        if self._hb is not None:
            while self._hb.recv(timeout_ms=0) is not None:
                self._last_hb = now
            silent = now - self._last_hb
            if silent > max(3 * self.cfg.engine.heartbeat_s, 3.0):
                out.append(f"engine silent for {silent:.1f} s")
        limit = max(self.cfg.capture.stall_s, 2.0) + 1.0
        for c in streamers:
            if c.done or c.shared is None or c.process is None or not c.process.is_alive():
                continue
            frames = int(c.shared[COUNTERS.index("frames")])
            if frames != c.frames:
                c.frames, c.frames_since = frames, now
            if frames <= 0:  # spawned (or restarted), first frame not yet through the pipeline
                out.append(f"{c.name} has delivered no frame" if now - c.frames_since > 60.0 else f"{c.name} starting")
            elif now - c.frames_since > limit:
                out.append(f"{c.name} no frames for {now - c.frames_since:.1f} s")
        return out

    def shutdown(self) -> int:
        self.state = "stopping"
        sdnotify.notify("STOPPING=1")
        log.info("stopping")
        self.stop_event.set()
        timeout = self.cfg.supervisor.stop_timeout_s
        for kind in ("streamer", "engine"):  # producers first, then the engine drains
            for c in self.children:
                p = c.process
                if c.kind != kind or p is None:
                    continue
                p.join(timeout)
                if p.is_alive():
                    log.warning("%s did not stop within %.1f s: terminating", c.name, timeout)
                    p.terminate()
                    p.join(2)
                if p.is_alive():
                    log.error("%s ignored SIGTERM: killing", c.name)
                    p.kill()
                    p.join(2)
                log.info("%s stopped (exit %s)", c.name, p.exitcode)
        if self.http is not None:
            self.http.close()
        if self._hb is not None:
            self._hb.close()
            self._hb = None
        log.info("stopped (exit %d)", self.exit_code)
        return self.exit_code

    def _install_signals(self) -> None:
        def handler(signum, _frame):
            log.info("%s received", signal.Signals(signum).name)  # logging's handler lock is reentrant
            self._signalled.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

        def reload(_signum, _frame):  # the engine re-reads its CURVE allow-list now
            if not self.cfg.engine.security.client_allow_dir:
                return  # nothing to reload (and an engine without an allow-list keeps SIGHUP's default)
            for c in self.children:
                if c.kind == "engine" and c.process is not None and c.process.pid:
                    try:
                        os.kill(c.process.pid, signal.SIGHUP)
                    except ProcessLookupError:
                        pass

        signal.signal(signal.SIGHUP, reload)

    # -- /metrics and /healthz ------------------------------------------------------------------------
    def _collector(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        sup = self

        class Collector:
            def collect(self):
                fams = {name: CounterMetricFamily(f"mfvan_streamer_{name}", HELP[name], labels=["camera"])
                        for name in COUNTERS if name not in GAUGES}
                gauges = {name: GaugeMetricFamily(f"mfvan_streamer_{name}", HELP[name], labels=["camera"])
                          for name in GAUGES}
                for c in sup.children:
                    if c.kind != "streamer":
                        continue
                    cam = c.name.removeprefix("streamer-")
                    for i, name in enumerate(COUNTERS):
                        (gauges if name in GAUGES else fams)[name].add_metric([cam], c.shared[i])
                yield from fams.values()
                yield from gauges.values()
                up = GaugeMetricFamily("mfvan_child_up", "1 while the child process is alive", labels=["child"])
                restarts = CounterMetricFamily("mfvan_child_restarts", "child restarts", labels=["child"])
                for c in sup.children:
                    up.add_metric([c.name], 1.0 if c.process is not None and c.process.is_alive() else 0.0)
                    restarts.add_metric([c.name], c.restart_total)
                yield up
                yield restarts
                yield GaugeMetricFamily("mfvan_streamd_running", "1 while the daemon is running",
                                        value=1.0 if sup.state == "running" else 0.0)
                yield GaugeMetricFamily("mfvan_streamd_degraded", "1 while a child is down or a source stalled",
                                        value=1.0 if sup.state == "degraded" else 0.0)

        return Collector()

    def healthy(self) -> tuple[bool, str]:
        """/healthz: ok only while running and progressing; else the state and why."""
        if self.state == "running":
            return True, "running"
        return False, f"{self.state}: {', '.join(self.problems)}" if self.problems else self.state

    def _start_http(self) -> bool:
        """/metrics and /healthz; False (logged in one line) when the port cannot be bound."""
        port = self.cfg.supervisor.metrics_port
        if not port:
            return True
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        registry.register(self._collector())
        host = self.cfg.supervisor.metrics_host
        try:
            self.http = serve_http(metrics_app(registry, self.healthy), port, host)
        except OSError as exc:  # in use, or an address this host does not have
            log.error("cannot serve /metrics on %s:%d: %s (supervisor.metrics_port, --metrics-port; 0 = off)",
                      host, port, exc.strerror or exc)
            return False
        log.info("metrics on http://%s:%d/metrics, health on /healthz", host, port)
        return True


# -- command line ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mfvan-streamd", description="Real-time micro-expression daemon: "
                                "camera(s) → faces → spotting → engine → results on a ZeroMQ PUB socket.")
    src = p.add_argument_group("source (one or more; a config file may list cameras instead)")
    src.add_argument("--camera", type=_camera_arg, action="append", metavar="N|genicam:ID",
                     help="V4L2 camera /dev/videoN, or a GenICam camera by serial, user id, IP or device id "
                     "(repeatable; see --list-cameras)")
    src.add_argument("--list-cameras", action="store_true", help="list V4L2 and GenICam cameras with their modes, then exit")
    src.add_argument("--video", action="append", metavar="PATH", help="replay a video file or a frame folder (repeatable)")
    src.add_argument("--fps", type=float, help="frame rate of frame folders / forced rate of videos / camera rate")
    src.add_argument("--realtime", action="store_true", help="pace a replay at the source rate (else as fast as possible)")
    p.add_argument("--pub", metavar="ENDPOINT", help="where results are published (engine PUB), e.g. tcp://*:5556 "
                   "(beyond loopback only with CURVE keys or security.insecure: true)")
    p.add_argument("--engine", metavar="ENDPOINT", help="use a running mfvan-engined at this PULL endpoint instead of "
                   "the embedded engine")
    p.add_argument("--metrics-port", type=int, help="/metrics and /healthz port (0 = off)")
    p.add_argument("--dry-run", action="store_true", help="check camera/video, model and ports, then exit")
    p.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, help="for the supervisor and every child")
    add_config_args(p)
    return p


def _camera_arg(text: str) -> dict:
    from streamer.capture import camera_arg

    try:
        return camera_arg(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def overrides_from_args(args: argparse.Namespace, base: StreamdConfig | None = None) -> dict:
    over: dict = {}
    cams = []
    for c in args.camera or []:
        cams.append(dict(c))
    for i, v in enumerate(args.video or []):
        cams.append({"name": Path(v).stem[:40].replace("/", "_").replace(" ", "_") or f"video{i}", "video": v})
    if cams:
        names = [c["name"] for c in cams]
        for c in cams:
            if names.count(c["name"]) > 1:
                c["name"] = f"{c['name']}-{names.index(c['name'])}-{cams.index(c)}"
            if args.fps:
                c["fps"], c["fps_from_file"] = args.fps, False
            if args.realtime:
                c["realtime"] = True
        over["cameras"] = cams
    elif args.fps or args.realtime:
        over["cameras"] = [{**c.model_dump(), **({"fps": args.fps, "fps_from_file": False} if args.fps else {}),
                            **({"realtime": True} if args.realtime else {})} for c in (base or StreamdConfig()).cameras]
    engine: dict = {}
    if args.pub:
        engine["pub_endpoint"] = args.pub
    if args.engine:
        engine["pair_endpoint"] = args.engine
        over["embedded_engine"] = False
    if engine:
        over["engine"] = engine
    if args.metrics_port is not None:
        over["supervisor"] = {"metrics_port": args.metrics_port}
    return over


def dry_run(cfg: StreamdConfig) -> int:
    """Open every source and read a frame, verify the engine artefact, try every port."""
    import socket

    import zmq

    from streamer.capture import CaptureError, open_camera

    ok = True

    def report(good: bool, what: str) -> None:
        nonlocal ok
        ok &= good
        print(f"[{'ok' if good else 'FAIL'}] {what}")

    for cam in cfg.cameras:
        try:
            src = open_camera(cam, cfg.capture)
            img = next(iter(src.frames()), (None, None))[0]
            extra = f"; mode mismatch {src.mismatch}" if src.mismatch else ""
            extra += "".join(f"; {w}" for w in getattr(src, "warnings", ()))
            report(img is not None, f"{cam.name}: {src.name} {'' if img is None else img.shape} "
                                    f"at {src.fps:.1f} fps{extra}")
            src.close()
        except CaptureError as exc:
            report(False, f"{cam.name}: {exc}")
    try:
        from streamer.pipeline import make_detector

        make_detector(cfg.faces)
        report(True, f"face detector: {cfg.faces.detector}")
    except RuntimeError as exc:
        report(False, f"face detector: {exc}")
    if cfg.embedded_engine:
        try:
            from engine.artefact import load_artefact

            art = load_artefact(cfg.engine.artefact)
            report(True, f"engine artefact: {art}")
        except Exception as exc:  # an artefact problem of any kind is what dry-run reports
            report(False, f"engine artefact: {exc}")
        ctx = zmq.Context()
        for ep in [e.strip() for e in f"{cfg.engine.pair_endpoint},{cfg.engine.pub_endpoint}".split(",") if e.strip()]:
            if ep.startswith("ipc://"):
                good, what = _ipc_free(ep[len("ipc://"):])
                report(good, f"endpoint {ep} {what}")
                continue
            s = ctx.socket(zmq.PULL)
            s.linger = 0
            try:
                s.bind(ep)  # TCP: a bind that succeeds takes nothing from anyone
                report(True, f"endpoint {ep} is free")
            except zmq.ZMQError as exc:
                report(False, f"endpoint {ep}: {exc}")
            finally:
                s.close(0)
        ctx.term()
    else:
        report(True, f"external engine at {cfg.engine.pair_endpoint} (not probed: PUSH/PULL has no handshake)")
    port = cfg.supervisor.metrics_port
    if port:
        with socket.socket() as s:
            try:
                s.bind((cfg.supervisor.metrics_host, port))
                report(True, f"metrics port {port} is free")
            except OSError as exc:
                report(False, f"metrics port {port}: {exc}")
    return 0 if ok else 1


def _ipc_free(path: str) -> tuple[bool, str]:
    """Is an ipc socket path free, without touching it?

    Why not a test bind: binding an ipc endpoint unlinks an existing socket file, so a --dry-run
    (ExecStartPre) next to a running daemon silently cut that daemon off from every new client
    and reported "[ok] free". A connect attempt tells a live socket from a stale file.
    """
    import socket

    if path.startswith("@"):  # abstract socket: no file; a live one answers a connect
        target = "\0" + path[1:]
    else:
        p = Path(path)
        if not p.exists():
            parent = p.parent if str(p.parent) else Path(".")
            if not parent.is_dir():
                return False, f"cannot be created: {parent} does not exist"
            return True, "is free"
        target = path
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(target)
        except FileNotFoundError:
            return True, "is free"
        except ConnectionRefusedError:
            return True, "is free (a stale socket file from an earlier run; it will be replaced)"
        except OSError as exc:
            return False, f"cannot be checked: {exc}"
    return False, "is in use by a running process (another mfvan-streamd or mfvan-engined?)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    enable_faulthandler()
    if args.log_level != "DEBUG":
        # FFmpeg (inside OpenCV) writes its own lines to stderr, outside the log format
        # ("[matroska @ 0x…] File ended prematurely"); every failure it describes is reported
        # through the logger here (cannot open, truncated replay, unreadable frame). Children
        # inherit the setting; --log-level DEBUG shows FFmpeg's own words again.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    base = None
    if args.config and (args.fps or args.realtime) and not (args.camera or args.video):
        from engine.config.loader import ConfigError, load_config

        try:
            base = load_config(StreamdConfig, args.config)
        except ConfigError:
            base = None  # config_from_args reports it below
    if args.list_cameras:
        from streamer.capture import list_cameras

        print("\n".join(list_cameras()))
        return 0
    cfg = config_from_args(args, StreamdConfig, overrides_from_args(args, base))
    if not any(c.kind for c in cfg.cameras):
        parser.error("no source: give --camera N|genicam:ID or --video PATH (or cameras in --config)")
    if args.dry_run:
        return dry_run(cfg)
    for cam in cfg.cameras:
        if cam.video and not Path(cam.video).exists():  # permanent: fail now, not after six restarts
            print(f"mfvan-streamd: {cam.name}: {cam.video} does not exist", file=sys.stderr)
            return 2
    return Supervisor(cfg, args.engine, args.log_level).run()


if __name__ == "__main__":
    raise SystemExit(main())
