"""`mfvan-bench suite`: the interview-suite deployment, N cameras on one host through ONE daemon.

Why a benchmark of its own: `mfvan-bench streamer` measures one pinned core and `mfvan-bench
e2e` an engine fed by hand; an interview suite is several 200 fps cameras, one or two faces
each, sharing a small host with the embedded engine. Only the whole daemon under that load
says whether frames are lost, pairs refused and the p99 kept (target: 0 lost, p99 ≤ 20 ms).

It renders one synthetic clip (a real face, micro-expressions every second; two faces side by
side with `--faces 2`), gives every camera its own looped frame folder of it (each starting at
a different offset, so the cameras' events do not arrive in step), writes a config with a
`cameras:` list (`realtime: true`, the given fps) and runs a real `mfvan-streamd` (the soak's
`Daemon`). An SDK subscriber (the soak's `Reader`: latency = result received − `spotted_ns`,
as `mfvan-bench e2e` measures it) reads every result; the supervisor's /metrics gives each
streamer's final counters once its replay has ended, the engine's /metrics its drops.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from streamer.harness.procs import metric_sum
from streamer.harness.soak import FRAME_FORMATS, Daemon, Reader, _pct, write_looped_folder

PROG = "mfvan-bench suite"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints the usage too)
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def micro_events(n: int, fps: float, period_s: float = 1.0) -> list[tuple[int, int, int]]:
    """(onset, apex, offset): a 300 ms micro-expression every `period_s`, after the floor's warm-up."""
    step, start = max(1, round(period_s * fps)), round(0.8 * fps)
    rise, dur = round(0.15 * fps), round(0.3 * fps)
    return [(t, t + rise, t + dur) for t in range(start, n - dur - round(0.3 * fps), step)]


def render(seconds: float, fps: float, faces: int, seed: int = 0):
    """The unique frames and every face's events in them (the right face's are `lag` later)."""
    from streamer.harness.clip import ClipEvent, render_test_clip

    n = max(8, round(seconds * fps))
    evs = micro_events(n, fps)
    regions = ("brow", "mouth", "eye")
    # half an event period: the second face's events fall between the first face's, inside the clip
    lag = round(0.5 * fps) if faces == 2 else 0
    frames = render_test_clip(n, [ClipEvent(on, ap, off, regions[i % 3], 2.5) for i, (on, ap, off) in enumerate(evs)],
                              fps=fps, seed=seed, faces=faces, second_lag=lag)
    truth = [(on + d, off + d) for d in ([0, lag] if faces == 2 else [0]) for on, _, off in evs]
    return frames, truth


def loop_folder(unique: list[Path], folder: Path, total: int, offset: int) -> Path:
    """`folder/img1.jpg ...`: `total` symlinks walking the unique frames from `offset`, looped."""
    folder.mkdir(parents=True, exist_ok=True)
    k = len(unique)
    for i in range(total):
        os.symlink(os.path.relpath(unique[(i + offset) % k], folder), folder / f"img{i + 1}{unique[0].suffix}")
    return folder


def events_in_replay(truth: list[tuple[int, int]], k: int, total: int, offset: int) -> int:
    """Micro events that lie whole inside a replay of `total` frames of a `k`-frame loop from `offset`."""
    n = 0
    for p in range(total // k + 2):
        for on, off in truth:
            s, e = p * k + on - offset, p * k + off - offset
            n += s >= 0 and e < total
    return n


class _Tally:
    """The Reader's subscriber, noting the camera (and engine-side latency) of each result in order.

    Why a wrapper: the Reader measures e2e latency the benchmark's way and appends it per result
    in arrival order; the camera noted here in the same order splits those numbers per camera
    without a second measurement.
    """

    def __init__(self, sub):
        self.sub = sub
        self.cameras: list[str] = []
        self.published_ms: list[float] = []  # spotted -> published by the engine

    def recv(self, timeout_ms=None):
        ev = self.sub.recv(timeout_ms)
        if ev is not None and ev.kind == "result" and len(self.cameras) < 1_000_000:
            self.cameras.append(ev.header.camera)
            self.published_ms.append((ev.header.published_ns - ev.header.spotted_ns) / 1e6)
        return ev

    def close(self) -> None:
        self.sub.close()

    @property
    def sequences(self):
        return self.sub.sequences


class SuiteReader(Reader):
    def __init__(self, endpoint: str, security=None):
        super().__init__(endpoint, security)
        self.sub = _Tally(self.sub)

    def per_camera(self) -> dict[str, dict]:
        e2e, pub = defaultdict(list), defaultdict(list)
        for cam, lat, p in zip(self.sub.cameras, self.latency_ms, self.sub.published_ms, strict=False):
            e2e[cam].append(lat)
            pub[cam].append(p)
        return {c: {"results": len(e2e[c]), **_lat(e2e[c], pub[c])} for c in e2e}


def _lat(e2e: list[float], pub: list[float]) -> dict:
    return {"e2e_ms": {"p50": _pct(e2e, 50), "p99": _pct(e2e, 99), "max": round(max(e2e), 2) if e2e else None},
            "spotted_to_published_ms": {"p50": _pct(pub, 50), "p99": _pct(pub, 99)}}


COUNTED = ("frames", "overruns", "gaps", "micro", "macro", "pairs_sent", "pairs_refused", "pairs_nocrop", "tracks",
           "lost", "invalid", "weak", "too_short", "blinks", "detections", "deferred")


def _camera_counters(m: dict[str, float], cam: str) -> dict[str, int]:
    return {k: int(m.get(f'mfvan_streamer_{k}_total{{camera="{cam}"}}', 0)) for k in COUNTED}


@contextmanager
def _stopping(reader: Reader):
    try:
        yield reader
    finally:
        reader.stop()


def run_suite(cameras: int, faces: int, seconds: float, fps: float, clip_seconds: float, artefact: str,
              progress: bool = True, frame_format: str = "bmp", pipeline_nice: int | None = None) -> dict:
    from tqdm import tqdm

    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="mfvan-suite-"))
    try:
        t_render = time.monotonic()
        frames, truth = render(min(clip_seconds, seconds), fps, faces)
        k = len(frames)
        total = max(1, round(seconds * fps))
        # the unique frames only, shared by every camera's looped folder
        write_looped_folder(work / "clip", frames, 0, fmt=frame_format)
        del frames
        unique = sorted((work / "clip" / "unique").glob(f"*.{frame_format}"))
        names = [f"cam{i}" for i in range(cameras)]
        offsets = [round(i * fps / cameras) % k for i in range(cameras)]  # spread over one event period
        cams = [{"name": n, "video": str(loop_folder(unique, work / "clips" / n, total, off)), "fps": fps,
                 "fps_from_file": False, "realtime": True} for n, off in zip(names, offsets, strict=True)]
        render_s = time.monotonic() - t_render
        # linger: the supervisor keeps /metrics up after the replays end while the results drain
        d = Daemon(work / "d", [], realtime=False, artefact=artefact,
                   overrides={"cameras": cams, "supervisor": {"linger_s": 5.0},
                              **({"capture": {"pipeline_nice": pipeline_nice}} if pipeline_nice is not None else {})})
        reader = SuiteReader(d.pub_endpoint, d.cfg.security)  # subscribed before the engine binds: none missed
        reader.start()
        final: dict[str, float] = {}
        engine: dict[str, float] = {}
        t0 = time.monotonic()
        with _stopping(reader), d:
            d.wait_running()
            t_run = time.monotonic()
            bar = tqdm(total=total * cameras, unit="frame", desc="suite", disable=not progress, leave=False)
            deadline = t_run + seconds + 120
            t_first = None  # the first frame read: the streamers' start-up is over
            while time.monotonic() < deadline and d.proc.poll() is None:
                time.sleep(0.5)
                m = d.metrics()
                if not m:
                    continue
                final = m
                per = {n: _camera_counters(m, n) for n in names}
                bar.n = sum(c["frames"] for c in per.values())
                if bar.n and t_first is None:
                    t_first = time.monotonic()
                bar.set_postfix(results=reader.counts["result"], lost=sum(c["overruns"] for c in per.values()),
                                refused=sum(c["pairs_refused"] for c in per.values()))
                bar.refresh()
                ended = all(per[n]["frames"] > 0 and not m.get(f'mfvan_streamer_running{{camera="{n}"}}', 1)
                            for n in names)
                if ended:
                    time.sleep(0.3)  # the streamers' last export, then the final read
                    final = d.metrics() or final
                    break
            bar.close()
            t_first = t_first or time.monotonic()
            replay_s = time.monotonic() - t_first
            sent = int(metric_sum(final, "mfvan_streamer_pairs_sent_total"))
            drain = time.monotonic() + 3.0
            while reader.counts["result"] < sent and time.monotonic() < drain and d.proc.poll() is None:
                time.sleep(0.1)
            engine = d.engine_metrics()
            code = d.stop()
        load_end = os.getloadavg()
        per_cam = reader.per_camera()
        rows = {}
        for n, off in zip(names, offsets, strict=True):
            c = _camera_counters(final, n)
            got = per_cam.get(n, {"results": 0, **_lat([], [])})
            rows[n] = {"frames_in_clip": total, "frames_read": c["frames"], "frames_lost": c["overruns"],
                       "sensor_gaps": c["gaps"], "micro_in_clip": events_in_replay(truth, k, total, off),
                       "micro": c["micro"], "macro": c["macro"], "pairs_sent": c["pairs_sent"],
                       "pairs_refused": c["pairs_refused"], "pairs_nocrop": c["pairs_nocrop"],
                       "results": got["results"], "pairs_lost": c["pairs_sent"] - got["results"],
                       "e2e_ms": got["e2e_ms"], "spotted_to_published_ms": got["spotted_to_published_ms"],
                       "dropped_by_pipeline": {x: c[x] for x in ("invalid", "weak", "too_short", "blinks")},
                       "tracks": c["tracks"], "tracks_lost": c["lost"],
                       "detections": c["detections"], "detections_deferred": c["deferred"]}
        tot_keys = ("frames_in_clip", "frames_read", "frames_lost", "sensor_gaps", "micro_in_clip", "micro", "macro",
                    "pairs_sent", "pairs_refused", "pairs_nocrop", "results", "pairs_lost", "detections",
                    "detections_deferred")
        total_row = {key: sum(r[key] for r in rows.values()) for key in tot_keys}
        total_row.update(_lat(reader.latency_ms, reader.sub.published_ms))
        drops = Counter({k.split('reason="', 1)[1].rstrip('"}'): int(v) for k, v in engine.items()
                         if k.startswith("mfvan_engine_dropped_total{")})
        return {
            "cameras": cameras, "faces": faces, "fps": fps, "seconds": seconds, "clip_seconds": k / fps,
            "frame_format": frame_format,
            "host_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in load_end],
            "render_s": round(render_s, 1), "startup_s": round(t_first - t0, 1), "replay_s": round(replay_s, 1),
            "per_camera": rows, "total": total_row, "engine_dropped": dict(drops),
            "subscriber_seq_missing": reader.sub.sequences.missing, "restarts": int(metric_sum(final,
                                                                                               "mfvan_child_restarts_total")),
            "daemon_exit": code, "target": {"frames_lost": 0, "e2e_p99_ms": 20.0},
            "log_tail": d.log()[-1500:] if code != 0 else "",
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _print(out: dict) -> None:
    t = out["total"]
    print(f"{out['cameras']} camera(s) x {out['fps']:g} fps, {out['faces']} face(s) each, {out['seconds']:g} s realtime "
          f"({out['frame_format']} frames) "
          f"on {out['host_cpus']} CPU(s) (load {out['load_average_start'][0]} -> {out['load_average_end'][0]})")
    print(f"{'camera':8} {'frames':>13} {'lost':>5} {'micro':>9} {'sent':>5} {'refused':>7} {'lost':>5} "
          f"{'results':>7} {'e2e p50':>8} {'e2e p99':>8}")
    for name, r in [*out["per_camera"].items(), ("total", t)]:
        print(f"{name:8} {r['frames_read']:>6}/{r['frames_in_clip']:<6} {r['frames_lost']:>5} "
              f"{r['micro']:>4}/{r['micro_in_clip']:<4} {r['pairs_sent']:>5} {r['pairs_refused']:>7} "
              f"{r['pairs_lost']:>5} {r['results']:>7} {r['e2e_ms']['p50']!s:>8} {r['e2e_ms']['p99']!s:>8}")
    print(f"spotted -> published (engine side) p50 {t['spotted_to_published_ms']['p50']} ms, p99 "
          f"{t['spotted_to_published_ms']['p99']} ms; engine drops {out['engine_dropped'] or 0}; restarts "
          f"{out['restarts']}; daemon exit {out['daemon_exit']}; detector runs {t['detections']} "
          f"({t['detections_deferred']} deferred while behind)")
    ok = t["frames_lost"] == 0 and t["e2e_ms"]["p99"] is not None and t["e2e_ms"]["p99"] <= 20.0
    print(f"target 0 frames lost, e2e p99 <= 20 ms: {'met' if ok else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog=PROG, description="N cameras (synthetic 640x480 replays paced in real time) through one "
                "mfvan-streamd with its embedded engine, an SDK subscriber reading every result: frames lost, "
                "pairs refused, e2e latency p50/p99 per camera and in total.")
    p.add_argument("--cameras", type=int, default=4, help="cameras (default 4)")
    p.add_argument("--faces", type=int, default=1, help="faces per camera: 1 or 2 (side by side)")
    p.add_argument("--seconds", type=float, default=30.0, help="replay length per camera (default 30)")
    p.add_argument("--fps", type=float, default=200.0, help="camera rate (default 200)")
    p.add_argument("--clip-seconds", type=float, default=4.0, help="unique frames rendered, looped to --seconds")
    p.add_argument("--artefact", default="", help="engine artefact folder (default: the bundled demo artefact)")
    p.add_argument("--frames", choices=FRAME_FORMATS, default="bmp",
                   help="replay frame files: bmp (uncompressed: read at the cost of a copy, as a camera delivers "
                   "raw frames; default) or jpg (adds a 1.3 ms decode per frame, which a camera does not cost)")
    p.add_argument("--pipeline-nice", type=int, choices=range(20), metavar="0..19",
                   help="the daemon's capture.pipeline_nice (default: the config's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if not 1 <= args.cameras <= 16:
        p.error(f"--cameras must be 1..16, not {args.cameras}")
    if args.faces not in (1, 2):
        p.error(f"--faces must be 1 or 2, not {args.faces}")
    for name in ("seconds", "fps", "clip_seconds"):
        v = getattr(args, name)
        if not (v > 0 and np.isfinite(v)):
            p.error(f"--{name.replace('_', '-')} must be a positive number, not {v:g}")
    if args.fps > 2000:
        p.error(f"--fps must be at most 2000, not {args.fps:g}")
    from engine.artefact import ArtefactError, load_artefact

    try:
        load_artefact(args.artefact)
    except ArtefactError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        out = run_suite(args.cameras, args.faces, args.seconds, args.fps, args.clip_seconds, args.artefact,
                        progress=sys.stderr.isatty(), frame_format=args.frames, pipeline_nice=args.pipeline_nice)
    except (RuntimeError, TimeoutError) as exc:  # the daemon did not come up: its log tail says why
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(out))
    else:
        _print(out)
    t = out["total"]
    return 0 if out["daemon_exit"] == 0 and t["results"] > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
