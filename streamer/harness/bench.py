"""`mfvan-bench streamer` and `mfvan-bench e2e`: the streamer's speed targets (DESIGN §8).

streamer: frames/s through faces + align + spot on ONE core (the process is pinned, OpenCV
and ONNX Runtime get one thread), frames decoded into memory first so the codec is not
measured; then a paced replay at the camera rate through the real grab thread and ring,
counting frames lost (ring overruns). e2e: an engine process (spawned, as in the daemon),
pairs pushed the way the streamer pushes them, a subscriber; latency = result received −
`spotted_ns` (the moment the spotter accepted the event), p50/p99.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator

import cv2
import numpy as np

from engine.config.cli import add_config_args, config_from_args
from streamer.capture import CaptureError, Source
from streamer.config import StreamdConfig


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        return f"cpu{cpu}"
    return "unpinned"


def _load_frames(video: str | None, n: int, fps: float | None) -> tuple[list[np.ndarray], float, str]:
    if not video:
        from streamer.harness.clip import ClipEvent, render_test_clip

        evs = [ClipEvent(s, s + 30, s + 60, r, 2.5) for s, r in zip(range(150, n - 80, 250),
                                                                      ["brow", "mouth", "eye"] * 100, strict=False)]
        return render_test_clip(n, evs), 200.0, "synthetic 640x480 (streamer.harness.clip)"
    from streamer.capture import open_source

    src = open_source(video, None, fps)
    frames = []
    for img, _ in src.frames():
        frames.append(img)
        if len(frames) >= n:
            break
    src.close()
    return frames, src.fps, video


class _MemorySource(Source):
    """Frames from memory, so a paced replay measures the pipeline and not the decoder.

    A `Source` like every other (the interface's defaults: not live, no counters), so a
    field added to the interface cannot be missing here."""

    def __init__(self, frames: list[np.ndarray], fps: float, repeat: int):
        self._frames, self.fps, self.repeat, self.name = frames, fps, repeat, "memory"

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        for _ in range(self.repeat):
            for f in self._frames:
                yield f, None


def main_streamer(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mfvan-bench streamer", description=main_streamer.__doc__ or __doc__.split("\n\n")[0])
    p.add_argument("--video", help="video file or frame folder (default: a synthetic 640x480 clip)")
    p.add_argument("--fps", type=float, help="source rate (folders; default 200)")
    p.add_argument("--frames", type=int, default=1200, help="frames to load into memory")
    p.add_argument("--repeat", type=int, default=1, help="passes over the frames")
    p.add_argument("--paced-rate", type=float, default=200.0, help="camera rate for the frames-lost run (0 = skip)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_args(p)
    args = p.parse_args(argv)
    cfg = config_from_args(args, StreamdConfig)
    core = _pin_one_core()
    cv2.setNumThreads(1)
    from streamer.capture import Frame, Grabber
    from streamer.pipeline import Pipeline, make_detector

    try:
        frames, fps, what = _load_frames(args.video, args.frames, args.fps)
    except CaptureError as exc:
        print(f"mfvan-bench streamer: {exc}", file=sys.stderr)
        return 2
    if not frames:
        print("mfvan-bench streamer: no frames", file=sys.stderr)
        return 2
    det = make_detector(cfg.faces, threads=1)
    pipe = Pipeline(cfg.faces, cfg.spotter, fps, detector=det)
    for i, f in enumerate(frames[:50]):  # warm-up: ORT session, DIS, allocations
        pipe.process(Frame(i, round(i * 1e9 / fps), f))
    pipe = Pipeline(cfg.faces, cfg.spotter, fps, detector=det)
    n = 0
    events = 0
    per_frame = []
    c0 = time.process_time()  # CPU time: what one core does, whatever else shares the machine
    t0 = time.perf_counter()
    for _ in range(args.repeat):
        for f in frames:
            s = time.perf_counter_ns()
            events += len(pipe.process(Frame(n, round(n * 1e9 / fps), f)))
            per_frame.append(time.perf_counter_ns() - s)
            n += 1
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    pf = np.asarray(per_frame) / 1e6
    out = {"what": what, "resolution": f"{frames[0].shape[1]}x{frames[0].shape[0]}", "core": core,
           "frames": n, "seconds": round(dt, 3), "fps": round(n / dt, 1), "cpu_seconds": round(cpu, 3),
           "fps_per_cpu_second": round(n / cpu, 1) if cpu > 0 else None,
           "ms_per_frame": {"p50": round(float(np.percentile(pf, 50)), 3), "p99": round(float(np.percentile(pf, 99)), 3),
                            "max": round(float(pf.max()), 3)},
           "detect_every": cfg.faces.detect_every, "detect_width": cfg.faces.detect_width,
           "spot_size": cfg.spotter.spot_size, "events": events, "counters": pipe.counters()}
    if args.paced_rate > 0:
        src = _MemorySource(frames, args.paced_rate, args.repeat)
        grab = Grabber(src, cfg.capture.ring_frames, cfg.capture.gap_factor, realtime=True, live=True).start()
        pipe = Pipeline(cfg.faces, cfg.spotter, args.paced_rate, detector=det)
        seen = 0
        while True:
            fr = grab.get(timeout=5.0)
            if fr is None:
                break
            pipe.process(fr)
            seen += 1
        grab.stop()
        out["paced"] = {"rate": args.paced_rate, "grabbed": grab.stats.frames, "processed": seen,
                        "lost_overruns": grab.stats.overruns, "sensor_gaps": grab.stats.gaps}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{what} {out['resolution']} on one core ({core}): {out['fps']} frames/s through faces+align+spot "
              f"({out['fps_per_cpu_second']} per CPU-second; p50 {out['ms_per_frame']['p50']} ms, "
              f"p99 {out['ms_per_frame']['p99']} ms per frame)")
        if "paced" in out:
            pc = out["paced"]
            print(f"paced at {pc['rate']} fps: {pc['processed']}/{pc['grabbed']} processed, "
                  f"{pc['lost_overruns']} lost to overruns, {pc['sensor_gaps']} gaps")
    return 0


def main_e2e(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mfvan-bench e2e", description="apex leaves the spotter -> result published "
                                "and received by a subscriber: p50/p99 over real processes and sockets")
    p.add_argument("--video", help="source of real aligned crops (default: synthetic clip)")
    p.add_argument("--pairs", type=int, default=300)
    p.add_argument("--warmup", type=int, default=50, help="pairs sent first and not measured (allocations, caches)")
    p.add_argument("--rate", type=float, default=50.0, help="pairs per second pushed")
    p.add_argument("--artefact", default="", help="engine artefact (default: the bundled demo)")
    p.add_argument("--threads", type=int, default=2, help="engine intra-op threads")
    p.add_argument("--json", action="store_true")
    add_config_args(p)
    args = p.parse_args(argv)
    cfg = config_from_args(args, StreamdConfig)
    import multiprocessing as mp
    import tempfile

    from engine.artefact import ArtefactError, load_artefact
    from engine.process import child_entry
    from engine.wire.client import Subscriber
    from streamer.publish import Publisher
    from streamer.spotting.spotter import SpottedEvent

    try:
        load_artefact(args.artefact)
    except ArtefactError as exc:
        print(f"mfvan-bench e2e: {exc}", file=sys.stderr)
        return 2
    try:
        frames, fps, what = _load_frames(args.video, 240, None)
    except CaptureError as exc:
        print(f"mfvan-bench e2e: {exc}", file=sys.stderr)
        return 2
    from streamer.faces.align import align
    from streamer.pipeline import make_detector

    faces = make_detector(cfg.faces)(frames[0])
    if not faces:
        print("mfvan-bench e2e: no face in the source", file=sys.stderr)
        return 2
    crops = [align(f, faces[0].landmarks, cfg.faces.crop_size) for f in frames[:: max(1, len(frames) // 16)]]
    tmp = tempfile.mkdtemp(prefix="mfvan-e2e-")
    ecfg = cfg.engine.model_copy(update={"artefact": args.artefact, "pair_endpoint": f"ipc://{tmp}/pairs",
                                         "pub_endpoint": f"ipc://{tmp}/pub", "intra_op_threads": args.threads,
                                         "heartbeat_s": 0.2})
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    proc = ctx.Process(target=child_entry, args=("engine.server:run_json", "INFO", stop, (ecfg.model_dump_json(),)))
    proc.start()
    from engine.wire.client import DEFAULT_TOPICS
    from engine.wire.protocol import TOPIC_HEARTBEAT

    # heartbeats are not in a subscriber's default topics; without them the wait below never
    # saw the engine come up and ran into its 120 s limit on every run
    sub = Subscriber(ecfg.pub_endpoint, kinds=(*DEFAULT_TOPICS, TOPIC_HEARTBEAT))
    try:
        deadline = time.monotonic() + 120
        while True:
            ev = sub.recv(200)
            if ev is not None and ev.kind == "heartbeat":
                break
            if not proc.is_alive() or time.monotonic() > deadline:
                print("mfvan-bench e2e: the engine did not start (no heartbeat within 120 s)", file=sys.stderr)
                return 2
        pub = Publisher(ecfg.pair_endpoint, "bench", hwm=1000)
        time.sleep(0.3)
        lat = []
        sent = 0
        period = 1.0 / args.rate
        next_t = time.perf_counter()
        from engine.wire.protocol import now_ns

        pending = 0
        warm = max(0, args.warmup)

        def take(e) -> None:
            nonlocal pending
            if e is not None and e.kind == "result":
                pending -= 1
                if e.header.onset_index >= warm:  # warm-up results are not measured
                    lat.append((e.received_ns - e.header.spotted_ns) / 1e6)

        for i in range(warm + args.pairs):
            c0, c1 = crops[i % len(crops)], crops[(i + 3) % len(crops)]
            ev = SpottedEvent(0, i, i + 10, i + 20, 0, 0, 0, 1.0, "micro", onset_crop=c0, apex_crop=c1)
            ev.spotted_ns = now_ns()
            ok = pub.event(ev, lambda ts: now_ns())
            sent += ok and i >= warm
            pending += ok
            next_t += period
            while True:
                wait = next_t - time.perf_counter()
                take(sub.recv(max(0, int(wait * 1000))))
                if time.perf_counter() >= next_t:
                    break
        end = time.monotonic() + 3
        while pending > 0 and time.monotonic() < end:
            take(sub.recv(200))
        pub.close()
    finally:
        sub.close()
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    arr = np.asarray(lat)
    out = {"what": what, "pairs_sent": sent, "results": len(lat), "lost": sent - len(lat), "rate": args.rate,
           "engine_threads": args.threads,
           "latency_ms": {"p50": round(float(np.percentile(arr, 50)), 3) if len(arr) else None,
                          "p99": round(float(np.percentile(arr, 99)), 3) if len(arr) else None,
                          "max": round(float(arr.max()), 3) if len(arr) else None}}
    if args.json:
        print(json.dumps(out))
    else:
        lm = out["latency_ms"]
        print(f"spotter -> result received: p50 {lm['p50']} ms, p99 {lm['p99']} ms, max {lm['max']} ms "
              f"over {len(lat)} results ({out['lost']} lost) at {args.rate} pairs/s")
    return 0 if len(lat) else 1
