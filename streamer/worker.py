"""One camera's streamer process: grab thread → faces → align → spot → PUSH to the engine.

Runs in a child spawned by `mfvan-streamd` (or in the foreground for tests/benchmarks).
Counters go to a shared-memory array the supervisor reads for /metrics (one writer, no lock
needed for monotonically increasing int64 values) and, once a second, to the engine as a
Status message, so subscribers see streamer health too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import deque
from pathlib import Path

import cv2

from engine.process import release_freed_memory
from engine.wire.protocol import now_ns
from streamer.capture import SOURCE_GAUGES, SOURCE_HELP, CaptureError, Grabber, open_camera
from streamer.config import StreamdConfig
from streamer.pipeline import Pipeline
from streamer.publish import Publisher

log = logging.getLogger("mfvan.streamer")

# Every counter of the pipeline (Pipeline.counters(): tracker and spotter stats), the grab thread
# and the publisher, in the shared array's order; /metrics exports each as
# mfvan_streamer_<name>_total (GAUGES as mfvan_streamer_<name>). A counter missing here would be
# counted and never seen: tests/system/test_daemon.py checks Pipeline.counters() against it.
HELP = {
    "frames": "frames read from the source",
    "gaps": "sensor gaps (timestamp jumps over capture.gap_factor / fps)",
    "overruns": "frames dropped at the capture ring (the pipeline fell behind), oldest first",
    "breaks": "continuity breaks seen by the pipeline (gaps + overrun drops)",
    "tracks": "face tracks started",
    "detections": "face detector runs",
    "scans": "full-frame detector runs (of detections)",
    "reanchors": "tracks re-anchored on a new detection (windows across them are invalid)",
    "lost": "tracks lost",
    "deferred": "due face detector runs put off while frames queued in the ring (faces.defer_when_behind)",
    "flows": "optical-flow measurements (one per tracked face per frame)",
    "micro": "micro-expressions spotted",
    "macro": "macro-expressions spotted",
    "too_short": "episodes shorter than spotter.micro_min_ms, dropped",
    "invalid": "episodes broken by a gap, overrun, re-anchor or lost track, dropped",
    "blinks": "short eye-only episodes (blinks), dropped",
    "weak": "episodes whose peak stayed below confirm_factor x the trigger margin (noise), dropped",
    "drift": "held changes that never returned, too weak for an expression (head motion, light), dropped",
    "pairs_sent": "(onset, apex) pairs sent to the engine",
    "pairs_refused": "pairs the engine queue refused (high-water mark or no engine), dropped",
    "pairs_nocrop": "micro events without crops to send, dropped",
    "macro_sent": "macro-expression events sent",
    "macro_refused": "macro-expression events the engine queue refused, dropped",
    "status_sent": "status messages sent to the engine",
    "status_refused": "status messages the engine queue refused, dropped",
    "stalls": "times the source stopped delivering frames for capture.stall_s",
    "running": "1 while the streamer is running",
    "stalled": "1 while the streamer is stalled",
    "ring": "frames waiting in the capture ring",
    "trims": "times freed frame memory was handed back to the OS after a backed-up ring drained",
}
HELP.update(SOURCE_HELP)  # a camera's own drop counters and clock (GenICam: streamer/genicam.py)
COUNTERS = tuple(HELP)
GAUGES = ("running", "stalled", "ring", *SOURCE_GAUGES)  # states, ring depth, camera clock; the rest only grow

TRIM_AFTER_FRAMES = 64  # a ring this deep (58 MB of 640x480 frames) is worth returning once drained

EXIT_DONE = 0  # the replay ended or we were asked to stop
EXIT_SOURCE = 3  # the camera/video could not be opened or read
EXIT_CONFIG = 4  # the noise-floor file or another input is unusable
EXIT_PARTIAL = 5  # a replay ended before its file's last frame (truncated or damaged)


def load_noise_seed(path: str) -> tuple[float, float] | None:
    """(median, mad) from a `calibration/noise_floor.py` JSON; None when no file is configured."""
    if not path:
        return None
    data = json.loads(Path(path).read_text())
    return float(data["median"]), float(data["mad"])


def lower_priority(nice: int) -> None:
    """Lower this thread's CPU priority by `nice` (Linux: niceness is per thread; other systems:
    the process).

    Why: the processing thread is the one part of the daemon that can wait. With four 200 fps
    cameras on two cores, at equal shares the engine queued behind four pipelines at the moment a
    pair arrived (e2e p99 40 ms, `mfvan-bench suite`); niced, the engine and the grab threads run
    first and the pipeline catches up from its ring (`capture.ring_frames`), which only overruns
    (counted) when the host cannot keep up at all. Raising priority back needs privileges, so a
    failure is logged and ignored, never fatal.
    """
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    import threading

    try:
        tid = threading.get_native_id() if sys.platform.startswith("linux") else 0
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:
        log.warning("capture.pipeline_nice %d not applied: %s", nice, exc)


def run_camera(cfg_json: str, cam_index: int, stop_event, shared=None, pair_endpoint: str | None = None) -> int:
    """The whole streamer for `cfg.cameras[cam_index]`. Returns an exit code (see EXIT_*).

    In `mfvan-streamd` it runs under engine/process.py's `child_entry` (logging at the
    supervisor's level, faulthandler, SIGINT ignored, SIGTERM → `stop_event`).
    """
    cv2.setNumThreads(1)
    cfg = StreamdConfig.model_validate_json(cfg_json)
    cam = cfg.cameras[cam_index]
    counters = dict.fromkeys(COUNTERS, 0)

    def export() -> None:
        if shared is not None:
            for i, name in enumerate(COUNTERS):
                shared[i] = int(counters[name])

    try:
        source = open_camera(cam, cfg.capture)
    except CaptureError as exc:
        log.error("%s: %s", cam.name, exc)
        return EXIT_SOURCE
    try:
        seed = load_noise_seed(cfg.spotter.noise_floor_file)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("%s: noise floor file %s unusable: %s", cam.name, cfg.spotter.noise_floor_file, exc)
        source.close()
        return EXIT_CONFIG
    log.info("%s: %s at %.1f fps (%s)", cam.name, source.name, source.fps,
             "realtime" if cam.realtime or cam.live else "as fast as possible")
    for warning in getattr(source, "warnings", ()):
        log.warning("%s: %s", cam.name, warning)
    from streamer.faces.types import DetectorUnavailable

    try:
        pipe = Pipeline(cfg.faces, cfg.spotter, source.fps, noise_seed=seed)
    except DetectorUnavailable as exc:
        log.error("%s: %s", cam.name, exc)
        source.close()
        return EXIT_CONFIG
    grab = Grabber(source, cfg.capture.ring_frames, cfg.capture.gap_factor, realtime=cam.realtime,
                   live=cam.live).start()
    pub = Publisher(pair_endpoint or cfg.engine.pair_endpoint, cam.name, cfg.security, cfg.capture.pair_hwm)
    lower_priority(cfg.capture.pipeline_nice)  # after the grab and ZeroMQ threads started: they keep theirs
    walls: deque[int] = deque(maxlen=8192)  # capture ts of recent frames -> their wall clock
    wall_map: dict[int, int] = {}

    def wall_of(ts: int) -> int:
        return wall_map.get(ts, now_ns())

    def handle(events) -> None:
        for ev in events:
            ev.spotted_ns = now_ns()
            pub.event(ev, wall_of)
            log.info("%s: %s track %d frames %d-%d-%d score %.3f", cam.name, ev.kind, ev.track, ev.onset,
                     ev.apex, ev.offset, ev.score)

    ring_high = 0  # the ring's high-water mark since the last trim
    last_trim = 0.0

    def update() -> None:
        nonlocal ring_high, last_trim
        depth = len(grab.ring)
        ring_high = max(ring_high, depth)
        if ring_high >= TRIM_AFTER_FRAMES and depth <= 2 and time.monotonic() - last_trim >= 5.0:
            # a burst filled the ring and it has drained: give the frames' pages back (else RSS
            # keeps the burst's level for good)
            ring_high, last_trim = 0, time.monotonic()
            if release_freed_memory():
                counters["trims"] += 1
        counters.update(pipe.counters())
        counters.update(source.counters())
        counters.update(grab.stats.extra)  # the grab thread's own measures (flicker)
        counters.update(gaps=grab.stats.gaps, overruns=grab.stats.overruns,
                        pairs_sent=pub.sent["pair"], pairs_refused=pub.refused["pair"], pairs_nocrop=pub.nocrop,
                        macro_sent=pub.sent["macro"], macro_refused=pub.refused["macro"],
                        status_sent=pub.sent["status"], status_refused=pub.refused["status"], ring=len(grab.ring))
        counters["frames"] = grab.stats.frames
        export()

    # only where frames arrive on their own clock: a lossless replay waits for the pipeline, so
    # its ring is full by design and must be processed exactly as recorded
    shed = cfg.faces.defer_when_behind if (cam.live or cam.realtime) else 0
    counters["running"] = 1
    export()
    pub.status("starting", {})
    next_status = time.monotonic() + cfg.supervisor.status_every_s
    code = EXIT_DONE
    last_frame = time.monotonic()
    try:
        while not stop_event.is_set():
            try:
                frame = grab.get(timeout=0.2)
            except TimeoutError:
                idle = time.monotonic() - last_frame
                if idle >= cfg.capture.stall_s and not counters["stalled"]:
                    # a camera that stops delivering without an error: say so, loudly
                    counters["stalled"] = 1
                    counters["stalls"] += 1
                    export()
                    log.warning("%s: source stalled: no frame for %.1f s", cam.name, idle)
                    pub.status("degraded", counters, f"no frame for {idle:.1f} s")
                continue
            if frame is None:
                break
            last_frame = time.monotonic()
            if counters["stalled"]:
                counters["stalled"] = 0
                log.info("%s: frames again after a stall", cam.name)
            if len(walls) == walls.maxlen:
                wall_map.pop(walls[0], None)
            walls.append(frame.ts_ns)
            wall_map[frame.ts_ns] = frame.wall_ns
            handle(pipe.process(frame, behind=shed and len(grab.ring) >= shed))
            if frame.index % 32 == 0:
                update()
            if time.monotonic() >= next_status:
                next_status += cfg.supervisor.status_every_s
                update()
                pub.status("running", counters)
        else:
            log.info("%s: stop requested", cam.name)
        if not stop_event.is_set() and (short := source.incomplete()) is not None:
            log.warning("%s: %s", cam.name, short)
            code = EXIT_PARTIAL
        handle(pipe.flush())
    except CaptureError as exc:
        log.error("%s: capture failed: %s", cam.name, exc)
        code = EXIT_SOURCE
    finally:
        grab.stop()
        counters["running"] = 0
        update()
        pub.status("stopping", counters)
        update()  # the last status is counted too: a short replay may have sent no other (the
        # first is refused while the engine connection is still being set up)
        pub.close()
    log.info("%s: done: %s", cam.name, {k: counters[k] for k in ("frames", "gaps", "overruns", "micro", "macro",
                                                                 "pairs_sent", "pairs_refused")})
    return code
