"""`mfvan-bench soak`: run the full daemon for N minutes and record what leaks show up as.

A daemon in an interview room runs for days; a leak of a few kB per pair only shows after
hours. This benchmark replays a looped clip in real time through `mfvan-streamd` (a real
subprocess: supervisor, spawned engine, spawned streamer), keeps a subscriber reading every
result, and samples, every few seconds, from the outside (procfs and the HTTP endpoints, never
from inside the processes, so the measurement cannot change what it measures):
- RSS, open file descriptors and threads of the supervisor, the engine and each streamer;
- the streamer's counters (frames, overruns, micro/macro events, pairs sent/refused) from the
  supervisor's /metrics, the engine's (pairs in, results out, drops by reason) from its own
  /metrics, and what the subscriber received;
- in-flight pairs (sent by the streamer, no result received yet): the depth of the
  streamer → engine → subscriber queues taken together; it must stay bounded.
Rows go to a CSV as they are taken (an interrupted run keeps its data), a PNG plot and a
summary JSON at the end.

The `Daemon` class (and `streamer.harness.procs`) are also what tests/system/test_reliability_*.py drive the
daemon with: one way to start, observe and stop it, used by the benchmark and the tests alike.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from streamer.harness.procs import (
    children,
    cmdline,
    cpu_seconds,
    free_port,
    http_get,
    metric_sum,
    open_fds,
    parse_metrics,
    rss_kb,
    threads,
)


# -- procfs ----------------------------------------------------------------------------------------
def _events_for(n: int, fps: float, period_s: float = 1.0) -> list[tuple[str, int, int, int]]:
    """(kind, onset, apex, offset): a 300 ms micro-expression every period_s, one 1.2 s macro."""
    out = []
    step = max(1, round(period_s * fps))
    start = round(0.8 * fps)  # the spotter's noise floor learns on the first quiet frames
    has_macro = n > round(4 * fps)
    macro_at = n // 2
    t = start
    while t + round(0.35 * fps) < n - round(0.3 * fps):
        if not has_macro or abs(t - macro_at) > round(1.6 * fps):
            out.append(("micro", t, t + round(0.15 * fps), t + round(0.3 * fps)))
        t += step
    if has_macro:
        out.append(("macro", macro_at - round(0.3 * fps), macro_at, macro_at + round(0.9 * fps)))
    return out


def render_frames(seconds: float, fps: float, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """A clip with known micro/macro events on a real face; which renderer made it.

    The streamer's own renderer (`streamer.harness.clip`): the streamer layer does not reach up
    into the trainer's corpus renderer (pass `--video` with an `mfvan-synth` clip for other
    identities). Head drift is off so the loop wraps without a jump.
    """
    from streamer.harness.clip import ClipEvent, render_test_clip

    n = max(8, round(seconds * fps))
    regions = ("brow", "mouth", "eye")
    evs = [ClipEvent(on, ap, off, regions[i % 3], 2.5 if kind == "micro" else 7.0, kind)
           for i, (kind, on, ap, off) in enumerate(_events_for(n, fps))]
    return render_test_clip(n, evs, fps=fps, seed=seed), "streamer.harness.clip"


FRAME_FORMATS = ("jpg", "bmp")  # replay frame files write_looped_folder can make


def write_looped_folder(folder: Path, frames: list[np.ndarray], total: int, quality: int = 92,
                        name: str = "loop", fmt: str = "jpg") -> Path:
    """`folder/img1.jpg ... imgTOTAL.jpg`: the K unique frames on disk once, the loop as symlinks.

    A real-time replay of 30 minutes at 200 fps is 360,000 frames; as JPEG files that would be
    gigabytes, as symlinks to K unique frames it is a few MB. The frame-folder source reads them
    in natural order like any CASME II folder. `fmt="bmp"`: uncompressed frames, read at the cost
    of a copy (0.2 ms at 640x480, JPEG 1.3 ms), as a camera's driver hands them over.
    """
    if fmt not in FRAME_FORMATS:
        raise ValueError(f"frame format must be one of {', '.join(FRAME_FORMATS)}, not {fmt!r}")
    import cv2

    folder = Path(folder)
    uniq = folder / "unique"
    uniq.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        p = uniq / f"f{i:06d}.{fmt}"
        if not cv2.imwrite(str(p), f, [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpg" else []):
            raise OSError(f"cannot write {p}")
        paths.append(p)
    loop = folder / name  # the daemon names the camera after the folder
    loop.mkdir(exist_ok=True)
    for i in range(total):
        os.symlink(os.path.relpath(paths[i % len(paths)], loop), loop / f"img{i + 1}.{fmt}")
    return loop


# -- the daemon under observation ---------------------------------------------------------------------
class Daemon:
    """`mfvan-streamd` in a subprocess with its own config, endpoints and log file.

    The config is written as YAML (the file an operator would write) from `overrides` on top of
    the defaults; endpoints are ipc sockets in `workdir` unless `tcp=True`; /metrics ports are
    free ports. `engine_pid()` finds the engine by its heartbeat (engine ids default to
    host-pid), `children()` lists the supervisor's processes.
    """

    def __init__(self, workdir: Path, videos: list[str], *, fps: float | None = None, realtime: bool = True,
                 artefact: str = "", overrides: dict | None = None, tcp: bool = False, engine_metrics: bool = True,
                 extra_args: list[str] | None = None, nice: int = 0):
        from engine.config.loader import dump_config, load_config
        from streamer.config import StreamdConfig

        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.metrics_port = free_port()
        self.engine_metrics_port = free_port() if engine_metrics else 0
        if tcp:
            pair, pub = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        else:
            pair, pub = f"ipc://{self.workdir}/pairs", f"ipc://{self.workdir}/pub"
        over = _deep_merge({
            "engine": {"artefact": artefact, "pair_endpoint": pair, "pub_endpoint": pub, "intra_op_threads": 1,
                       "metrics_port": self.engine_metrics_port, "heartbeat_s": 0.25},
            "supervisor": {"metrics_port": self.metrics_port, "status_every_s": 1.0},
        }, overrides or {})
        self.cfg = load_config(StreamdConfig, None, overrides=over)
        self.config_path = self.workdir / "streamd.yaml"
        self.config_path.write_text(dump_config(self.cfg))
        self.args = ["--config", str(self.config_path), "--log-level", "INFO"]
        for v in videos:
            self.args += ["--video", str(v)]
        if fps:
            self.args += ["--fps", str(fps)]
        if realtime:
            self.args.append("--realtime")
        self.args += list(extra_args or [])
        self.nice = nice
        self.log_path = self.workdir / "streamd.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def pub_endpoint(self) -> str:
        return self.cfg.engine.pub_endpoint

    @property
    def pair_endpoint(self) -> str:
        return self.cfg.engine.pair_endpoint

    def command(self) -> list[str]:
        script = Path(sys.executable).with_name("mfvan-streamd")
        head = [str(script)] if script.exists() else [sys.executable, "-m", "streamer.daemon"]
        return (["nice", "-n", str(self.nice)] if self.nice else []) + head + self.args

    def start(self) -> Daemon:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> dict[str, float]:
        status, body = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        return parse_metrics(body) if status == 200 else {}

    def engine_metrics(self) -> dict[str, float]:
        if not self.engine_metrics_port:
            return {}
        status, body = http_get(f"http://127.0.0.1:{self.engine_metrics_port}/metrics")
        return parse_metrics(body) if status == 200 else {}

    def healthz(self) -> tuple[int, str]:
        return http_get(f"http://127.0.0.1:{self.metrics_port}/healthz")

    def wait_running(self, timeout: float = 120.0) -> None:
        """Until /healthz says ok (engine heartbeat seen, streamers spawned)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mfvan-streamd exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            if self.healthz()[0] == 200:
                return
            time.sleep(0.2)
        raise TimeoutError(f"mfvan-streamd not running after {timeout:.0f} s:\n{self.log()[-3000:]}")

    def children(self) -> list[int]:
        """Engine and streamer processes (the multiprocessing resource tracker left out)."""
        return [p for p in children(self.pid) if "resource_tracker" not in cmdline(p)]

    def engine_pid(self, timeout: float = 30.0, exclude: int | None = None) -> int:
        """The pid in the engine's heartbeat topic (`hb/<host>-<pid>/`)."""
        from engine.wire.client import Subscriber

        with Subscriber(self.pub_endpoint, kinds=("hb/",), security=self.cfg.security) as sub:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                ev = sub.recv(200)
                if ev is None:
                    continue
                pid = int(ev.header.component.rsplit("-", 1)[1])
                if pid != exclude:
                    return pid
        raise TimeoutError(f"no engine heartbeat on {self.pub_endpoint} within {timeout:.0f} s")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (ordered shutdown), then SIGKILL the whole session if it hangs."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.proc is not None:  # nothing of ours may outlive a test
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Reader(threading.Thread):
    """A subscriber that reads everything the engine publishes, as fast as it comes."""

    def __init__(self, endpoint: str, security=None):
        super().__init__(name="soak-sub", daemon=True)
        from engine.wire.client import Subscriber

        self.sub = Subscriber(endpoint, kinds=("label/", "macro/", "status/", "hb/"), security=security)
        self.counts: Counter[str] = Counter()
        self.latency_ms: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            ev = self.sub.recv(200)
            if ev is None:
                continue
            self.counts[ev.kind] += 1
            if ev.kind == "result":
                lat = (ev.received_ns - ev.header.spotted_ns) / 1e6
                if len(self.latency_ms) < 1_000_000:
                    self.latency_ms.append(lat)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.sub.close()


# -- sampling ----------------------------------------------------------------------------------------
COLUMNS = ("t_s", "rss_total_mb", "rss_supervisor_mb", "rss_engine_mb", "rss_streamers_mb", "fds_total",
           "threads_total", "cpu_s_total", "frames", "overruns", "gaps", "micro", "macro", "pairs_sent",
           "pairs_refused", "pairs_nocrop", "ring", "engine_pairs_in", "engine_results_out", "engine_dropped", "results_received",
           "macro_received", "status_received", "in_flight", "restarts", "children")


def sample(d: Daemon, reader: Reader, t0: float, engine_pid: int | None) -> dict:
    m = d.metrics()
    em = d.engine_metrics()
    kids = d.children()
    sup = d.pid
    eng = engine_pid if engine_pid in kids else None
    streamers = [p for p in kids if p != eng]
    pids = [sup, *kids]
    row = {
        "t_s": round(time.monotonic() - t0, 1),
        "rss_total_mb": round(sum(rss_kb(p) for p in pids) / 1024, 1),
        "rss_supervisor_mb": round(rss_kb(sup) / 1024, 1),
        "rss_engine_mb": round(rss_kb(eng) / 1024, 1) if eng else 0.0,
        "rss_streamers_mb": round(sum(rss_kb(p) for p in streamers) / 1024, 1),
        "fds_total": sum(open_fds(p) for p in pids),
        "threads_total": sum(threads(p) for p in pids),
        "cpu_s_total": round(sum(cpu_seconds(p) for p in pids), 1),
        "frames": int(metric_sum(m, "mfvan_streamer_frames_total")),
        "overruns": int(metric_sum(m, "mfvan_streamer_overruns_total")),
        "gaps": int(metric_sum(m, "mfvan_streamer_gaps_total")),
        "micro": int(metric_sum(m, "mfvan_streamer_micro_total")),
        "macro": int(metric_sum(m, "mfvan_streamer_macro_total")),
        "pairs_sent": int(metric_sum(m, "mfvan_streamer_pairs_sent_total")),
        "pairs_refused": int(metric_sum(m, "mfvan_streamer_pairs_refused_total")),
        "pairs_nocrop": int(metric_sum(m, "mfvan_streamer_pairs_nocrop_total")),
        "ring": int(metric_sum(m, "mfvan_streamer_ring")),
        "engine_pairs_in": int(metric_sum(em, "mfvan_engine_pairs_in_total")),
        "engine_results_out": int(metric_sum(em, "mfvan_engine_results_out_total")),
        "engine_dropped": int(metric_sum(em, "mfvan_engine_dropped_total")),
        "results_received": reader.counts["result"],
        "macro_received": reader.counts["macro"],
        "status_received": reader.counts["status"],
        "restarts": int(metric_sum(m, "mfvan_child_restarts_total")),
        "children": len(kids),
    }
    row["in_flight"] = row["pairs_sent"] - row["results_received"]
    return row


def summarise(rows: list[dict], warmup_s: float) -> dict:
    """Start/end memory and the growth rate after warm-up (least squares over the steady part)."""
    if not rows:
        return {}
    steady = [r for r in rows if r["t_s"] >= warmup_s] or rows
    t = np.array([r["t_s"] for r in steady], float)
    out = {"samples": len(rows), "duration_s": rows[-1]["t_s"], "warmup_s": warmup_s}
    for col in ("rss_total_mb", "rss_engine_mb", "rss_streamers_mb", "rss_supervisor_mb", "fds_total",
                "threads_total", "in_flight", "ring"):
        y = np.array([r[col] for r in steady], float)
        slope = float(np.polyfit(t, y, 1)[0]) * 3600 if len(steady) >= 3 and np.ptp(t) > 0 else 0.0
        out[col] = {"first": rows[0][col], "start": steady[0][col], "end": steady[-1][col],
                    "min": float(y.min()), "max": float(y.max()), "per_hour": round(slope, 2)}
    last = rows[-1]
    for col in ("frames", "overruns", "gaps", "micro", "macro", "pairs_sent", "pairs_refused", "pairs_nocrop",
                "engine_pairs_in",
                "engine_results_out", "engine_dropped", "results_received", "macro_received", "restarts"):
        out[col] = last[col]
    return out


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([r["t_s"] for r in rows]) / 60.0
    fig, ax = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for col, lab in (("rss_total_mb", "all processes"), ("rss_engine_mb", "engine"),
                     ("rss_streamers_mb", "streamer"), ("rss_supervisor_mb", "supervisor")):
        ax[0].plot(t, [r[col] for r in rows], label=lab)
    ax[0].set_ylabel("RSS (MB)")
    ax[0].set_ylim(bottom=0)
    ax[0].legend(loc="lower right", fontsize=8)
    ax[1].plot(t, [r["fds_total"] for r in rows], label="open fds")
    ax[1].plot(t, [r["threads_total"] for r in rows], label="threads")
    ax[1].plot(t, [r["in_flight"] for r in rows], label="pairs in flight")
    ax[1].plot(t, [r["ring"] for r in rows], label="capture ring depth (frames)")
    ax[1].set_ylim(bottom=0)
    ax[1].legend(loc="upper left", fontsize=8)
    for col, lab in (("pairs_sent", "pairs sent"), ("results_received", "results received"),
                     ("pairs_refused", "pairs refused"), ("engine_dropped", "engine drops"),
                     ("overruns", "ring overruns")):
        ax[2].plot(t, [r[col] for r in rows], label=lab)
    ax[2].set_ylabel("count")
    ax[2].set_xlabel("minutes")
    ax[2].legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def soak(out: Path, seconds: float, fps: float, every: float, clip_s: float, artefact: str, video: str,
         nice: int, overrides: dict | None = None, progress: bool = True) -> dict:
    """Run one soak; returns the summary (also written to out/summary.json)."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mfvan-soak-"))
    try:
        if video:
            source, what, src_fps = video, video, fps
        else:
            frames, what = render_frames(clip_s, fps)
            total = int((seconds + 120) * fps)  # the replay must outlast the run (start-up included)
            source, src_fps = str(write_looped_folder(work / "clip", frames, total)), fps
        d = Daemon(work / "d", [source], fps=src_fps, realtime=True, artefact=artefact, overrides=overrides,
                   nice=nice)
        rows: list[dict] = []
        csv_path = out / "soak.csv"
        with d, open(csv_path, "w", newline="") as fh:
            d.wait_running()
            reader = Reader(d.pub_endpoint, d.cfg.security)
            reader.start()
            eng = d.engine_pid()
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            t0 = time.monotonic()
            bar = tqdm(total=int(seconds), unit="s", desc="soak", disable=not progress, leave=False)
            died = None
            while time.monotonic() - t0 < seconds:
                time.sleep(max(0.0, min(every, seconds - (time.monotonic() - t0))))
                if d.proc.poll() is not None:
                    died = d.proc.returncode
                    break
                if eng not in d.children():
                    try:
                        eng = d.engine_pid(timeout=10)
                    except TimeoutError:
                        pass
                row = sample(d, reader, t0, eng)
                rows.append(row)
                writer.writerow(row)
                fh.flush()
                bar.n = int(row["t_s"])
                bar.set_postfix(rss=f"{row['rss_total_mb']:.0f}MB", results=row["results_received"])
                bar.refresh()
            bar.close()
            time.sleep(1.0)
            final = sample(d, reader, t0, eng) if died is None else None
            reader.stop()
            code = d.stop()
        summary = summarise(rows, warmup_s=min(60.0, 0.2 * seconds))
        summary.update(what=what, fps=fps, every_s=every, daemon_exit=died if died is not None else code,
                       died_during_run=died is not None, final_results_received=(final or {}).get("results_received"),
                       latency_ms_p50=_pct(reader.latency_ms, 50), latency_ms_p99=_pct(reader.latency_ms, 99),
                       log_tail=d.log()[-1500:] if died is not None or code != 0 else "")
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if rows:
            plot(rows, out / "soak.png", f"mfvan-bench soak: {seconds / 60:.1f} min, {what}, {fps:g} fps realtime")
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mfvan-bench soak", description="Replay a looped clip in real time through the "
                                "full daemon (mfvan-streamd subprocess + a subscriber) for N minutes; sample RSS, "
                                "open fds, threads, queue depths and counts to CSV, plot them to PNG.")
    p.add_argument("--minutes", type=float, default=1.0, help="how long to run (default 1)")
    p.add_argument("--fps", type=float, default=200.0, help="replay rate (the synthetic clip is rendered at it)")
    p.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--clip-seconds", type=float, default=12.0, help="length of the synthetic clip that is looped")
    p.add_argument("--video", default="", help="replay this video/frame folder instead of the synthetic loop "
                   "(it must last the whole run)")
    p.add_argument("--artefact", default="", help="engine artefact folder (default: the bundled demo artefact)")
    p.add_argument("--out", default="soak-out", help="folder for soak.csv, soak.png, summary.json")
    p.add_argument("--nice", type=int, default=0, help="run the daemon under nice -n N")
    p.add_argument("--max-growth-mb", type=float, default=0.0,
                   help="exit 1 when total RSS grows more than this after warm-up (0 = report only)")
    p.add_argument("--config", metavar="YAML", help="mfvan-streamd config the soak starts from (endpoints and "
                   "metrics ports are replaced by private ones)")
    p.add_argument("--print-config", action="store_true", help="print the effective daemon config and exit")
    p.add_argument("--validate-config", action="store_true", help="validate the config and exit (0 ok, 2 bad)")
    args = p.parse_args(argv)
    from engine.artefact import ArtefactError, load_artefact
    from engine.config.cli import config_from_args
    from streamer.config import StreamdConfig

    base = config_from_args(args, StreamdConfig)
    overrides = base.model_dump(mode="json", exclude={"cameras"}) if args.config else None
    if overrides is not None:
        overrides["engine"] = {k: v for k, v in overrides["engine"].items()
                               if k not in ("pair_endpoint", "pub_endpoint", "metrics_port", "artefact")}
        overrides.pop("supervisor", None)
    if args.minutes <= 0 or args.every <= 0 or args.fps <= 0:
        p.error("--minutes, --every and --fps must be > 0")
    artefact = args.artefact or (base.engine.artefact if args.config else "")
    try:
        load_artefact(artefact)
    except ArtefactError as exc:
        print(f"mfvan-bench soak: {exc}", file=sys.stderr)
        return 2
    if args.video and not Path(args.video).exists():
        print(f"mfvan-bench soak: {args.video}: no such file or folder", file=sys.stderr)
        return 2
    s = soak(Path(args.out), args.minutes * 60.0, args.fps, args.every, args.clip_seconds, artefact, args.video,
             args.nice, overrides)
    if not s.get("samples"):
        print(f"mfvan-bench soak: no samples taken (daemon exit {s.get('daemon_exit')})\n{s.get('log_tail', '')}",
              file=sys.stderr)
        return 1
    r = s["rss_total_mb"]
    print(f"{s['duration_s'] / 60:.1f} min of {s['what']} at {s['fps']:g} fps: RSS all processes "
          f"{r['first']} MB at the first sample, {r['start']} MB after {s['warmup_s']:.0f} s warm-up, {r['end']} MB "
          f"at the end ({r['per_hour']:+.1f} MB/h); engine {s['rss_engine_mb']['start']} -> "
          f"{s['rss_engine_mb']['end']} MB, streamer {s['rss_streamers_mb']['start']} -> "
          f"{s['rss_streamers_mb']['end']} MB; fds {s['fds_total']['start']} -> {s['fds_total']['end']}")
    print(f"frames {s['frames']} (overruns {s['overruns']}), micro {s['micro']} macro {s['macro']}, pairs sent "
          f"{s['pairs_sent']} refused {s['pairs_refused']}, results received {s['results_received']}, engine drops "
          f"{s['engine_dropped']}, restarts {s['restarts']}, in flight max {s['in_flight']['max']}; "
          f"latency p50 {s['latency_ms_p50']} ms p99 {s['latency_ms_p99']} ms; daemon exit {s['daemon_exit']}")
    print(f"wrote {args.out}/soak.csv, soak.png, summary.json")
    bad = s["died_during_run"] or s["daemon_exit"] != 0 or s["restarts"] > 0
    grown = args.max_growth_mb and r["end"] - r["start"] > args.max_growth_mb
    return 1 if bad or grown else 0


if __name__ == "__main__":
    raise SystemExit(main())
