"""`mfvan-analyze`: spot-then-recognise offline on a recording → one row per event.

What a researcher runs on a recorded interview (the habit of OpenFace's FeatureExtraction or
py-feat's detect_video): the daemon's own Pipeline (faces, tracking, the one crop path, the
spotter; `streamer.spot_cli.replay`) over a video file or frame folder, then the engine's own
backend (`engine.backends.load_backend`, the bundled artefact by default) on the spotted
micro events' (onset, apex) crops, fed by the engine's own pre-processing
(`engine.tensors.pair_inputs`, which applies the manifest's motion pre-processing where the
model asks for it). So an offline label is the label the live daemon would have published.

Why in the streamer layer: it needs only the streamer and the engine runtime, so the base
wheel (no torch) runs it; the timeline plot imports matplotlib lazily and says so if absent.

    mfvan-analyze --video interview.mp4 --out events.csv --timeline timeline.png --heatmaps heat/
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from engine.artefact import ArtefactError, load_artefact
from engine.backends import BackendUnavailable, load_backend
from engine.config.cli import add_config_args, config_from_args
from engine.process import setup_logging
from engine.tensors import pair_inputs, upsample_heatmaps
from streamer.capture import CaptureError
from streamer.config import StreamdConfig
from streamer.spot_cli import replay
from streamer.spotting.noise import published_threshold
from streamer.spotting.spotter import SpottedEvent

FORMATS = (".jsonl", ".csv")


def spot_with_crops(path: str, cfg: StreamdConfig, fps: float | None, progress: bool,
                    noise_seed: tuple[float, float] | None = None) -> tuple[list[SpottedEvent], dict, float, dict]:
    """Events with their crops, the Pipeline's counters, the fps and each track's motion
    signal [(frame, a)] (what the spotter thresholds; for the timeline)."""
    kw: dict = {"keep_crops": True, "record": True}
    if cfg.spotter.threshold == "published":
        _, first = replay(path, cfg, fps, None, progress, "pass 1/2", fixed_thresholds={}, record=True)
        kw["fixed_thresholds"] = {tid: published_threshold([a for _, a in sp.a_series], cfg.spotter.published_p)
                                  for tid, sp in first.spotters.items()}
        desc = "pass 2/2"
    else:
        kw["noise_seed"] = noise_seed
        desc = Path(path).name
    events, pipe = replay(path, cfg, fps, None, progress, desc, **kw)
    events.sort(key=lambda e: (e.onset, e.track))
    motion = {tid: list(sp.a_series) for tid, sp in pipe.spotters.items()}
    return events, pipe.counters(), pipe.fps, motion


def recognise(events: Sequence[SpottedEvent], backend, artefact) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """(probs (C,), heatmaps (4, g, g)) per event; None for macro events (the daemon sends
    only micro events to the engine) and events without crops."""
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(events)
    todo = [i for i, e in enumerate(events) if e.kind == "micro" and e.onset_crop is not None and e.apex_crop is not None]
    s = artefact.crop_size
    for i in todo:
        if events[i].apex_crop.shape[:2] != (s, s):
            raise ValueError(f"crops are {events[i].apex_crop.shape[0]} px, the artefact takes {s} px: "
                             f"set faces.crop_size: {s}")
    step = max(1, backend.max_batch)
    for k in range(0, len(todo), step):
        idx = todo[k : k + step]
        x0, x1 = pair_inputs([events[i].onset_crop for i in idx], [events[i].apex_crop for i in idx], artefact.manifest)
        probs, heat = backend.infer(x0, x1)
        for j, i in enumerate(idx):
            out[i] = (probs[j], heat[j])
    return out


def rows_for(video: str, events: Sequence[SpottedEvent], recog, labels: Sequence[str], t0_ns: int) -> list[dict]:
    rows = []
    for e, r in zip(events, recog, strict=True):
        row: dict = {
            "video": video, "track": e.track, "kind": e.kind,
            "onset": e.onset, "apex": e.apex, "offset": e.offset,
            "onset_s": round((e.onset_ts_ns - t0_ns) / 1e9, 4), "apex_s": round((e.apex_ts_ns - t0_ns) / 1e9, 4),
            "offset_s": round((e.offset_ts_ns - t0_ns) / 1e9, 4), "duration_ms": round(e.duration_ms, 1),
            "score": round(float(e.score), 4), "label": "",
        }
        for name in labels:
            row[f"p_{name}"] = ""
        if r is not None:
            probs = r[0]
            row["label"] = labels[int(np.argmax(probs))]
            for j, name in enumerate(labels):
                row[f"p_{name}"] = round(float(probs[j]), 4)
        rows.append(row)
    return rows


def write_rows(path: str, rows: list[dict], columns: list[str]) -> None:
    if path.endswith(".csv"):
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            w.writerows(rows)
    else:
        text = "".join(json.dumps({k: (None if r[k] == "" else r[k]) for k in columns}) + "\n" for r in rows)
        Path(path).write_text(text, encoding="utf-8")


def heatmap_pngs(folder: Path, events: Sequence[SpottedEvent], recog, names: Sequence[str]) -> int:
    """One PNG per recognised event: the apex crop, then each heatmap blended over it."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for e, r in zip(events, recog, strict=True):
        if r is None:
            continue
        crop = e.apex_crop
        s = crop.shape[0]
        maps = upsample_heatmaps(r[1], s, "uint8")
        tiles = [crop] + [cv2.addWeighted(crop, 0.55, cv2.applyColorMap(m, cv2.COLORMAP_JET), 0.45, 0) for m in maps]
        strip = np.concatenate(tiles, axis=1)
        bar = np.full((18, strip.shape[1], 3), 255, np.uint8)
        for k, title in enumerate(["apex", *names]):
            cv2.putText(bar, title, (k * s + 3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.imwrite(str(folder / f"event_t{e.track}_{e.onset:06d}_{e.apex:06d}.png"), np.concatenate([bar, strip]))
        n += 1
    return n


def timeline_png(path: str, motion: dict[int, list[tuple[int, float]]], events: Sequence[SpottedEvent],
                 rows: Sequence[dict], fps: float, title: str) -> None:
    """Motion signal per track against time, events as spans (micro/macro), labels at the apex."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise RuntimeError("--timeline needs matplotlib (pip install matplotlib)") from None
    fig, ax = plt.subplots(figsize=(12, 3.2), dpi=100)
    for tid, series in sorted(motion.items()):
        if series:
            idx = np.array([i for i, _ in series], float)
            a = np.array([v for _, v in series], float)
            # the spotter records a only outside its episodes: break the line there, never bridge
            cut = np.flatnonzero(np.diff(idx) > 1) + 1
            idx, a = np.insert(idx, cut, np.nan), np.insert(a, cut, np.nan)
            ax.plot(idx / fps, a, lw=0.8, label=f"track {tid} motion")
    top = max([a for s in motion.values() for _, a in s] or [1.0])
    top = top if top > 0 else 1.0
    for e, r in zip(events, rows, strict=True):
        colour = "tab:red" if e.kind == "micro" else "tab:grey"
        ax.axvspan(e.onset / fps, e.offset / fps, color=colour, alpha=0.25, lw=0)
        ax.axvline(e.apex / fps, color=colour, lw=0.8, ls="--")
        text = r["label"] or e.kind
        if r["label"]:
            text += f" {max(v for k, v in r.items() if k.startswith('p_') and v != ''):.2f}"
        ax.text(e.apex / fps, top * 1.9, text, rotation=90, va="top", ha="right", fontsize=7)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("motion a (crop px)")
    ax.set_ylim(0, top * 2.0)
    ax.set_title(title + "  (red: micro, grey: macro)", fontsize=9)
    if motion:
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mfvan-analyze", description="Spot micro- and macro-expressions in a recording and "
                                "recognise the micro ones with the engine's model; one row per event.")
    p.add_argument("--video", required=True, metavar="PATH", help="video file or folder of frames")
    p.add_argument("--out", required=True, metavar="FILE", help="events table: .jsonl or .csv")
    p.add_argument("--fps", type=float, help="frame rate (folders: default 200; videos: default the file's)")
    p.add_argument("--artefact", default="", metavar="DIR", help="engine artefact (default: the bundled demo model)")
    p.add_argument("--backend", default="onnxruntime", help="inference backend (default onnxruntime; torch, tensorrt, auto)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    p.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    p.add_argument("--threshold", choices=["online", "published"], help="override spotter.threshold")
    p.add_argument("--heatmaps", metavar="DIR", help="also write one heatmap PNG per recognised event here")
    p.add_argument("--timeline", metavar="FILE.png", help="also plot motion, events and labels against time")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    add_config_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    prog = "mfvan-analyze"
    if Path(args.out).suffix.lower() not in FORMATS:
        print(f"{prog}: --out {args.out}: the table must end in .jsonl or .csv", file=sys.stderr)
        return 2
    if args.timeline and not args.timeline.lower().endswith(".png"):
        print(f"{prog}: --timeline {args.timeline}: write a .png", file=sys.stderr)
        return 2
    if args.threads < 1:
        print(f"{prog}: --threads must be >= 1", file=sys.stderr)
        return 2
    over = {"spotter": {"threshold": args.threshold}} if args.threshold else None
    cfg = config_from_args(args, StreamdConfig, over)
    setup_logging("WARNING")
    try:
        artefact = load_artefact(args.artefact or None)
        backend = load_backend(artefact, args.backend, args.precision, threads=args.threads)
        if cfg.faces.crop_size != artefact.crop_size:
            raise ValueError(f"faces.crop_size is {cfg.faces.crop_size}, the artefact takes {artefact.crop_size} px crops")
        from streamer.worker import load_noise_seed

        events, counters, fps, motion = spot_with_crops(args.video, cfg, args.fps, not args.quiet,
                                                        load_noise_seed(cfg.spotter.noise_floor_file))
        recog = recognise(events, backend, artefact)
        labels = list(artefact.labels)
        t0 = 0  # frame folders start at 0 ns; video files report their own timestamps from 0
        rows = rows_for(args.video, events, recog, labels, t0)
        columns = ["video", "track", "kind", "onset", "apex", "offset", "onset_s", "apex_s", "offset_s",
                   "duration_ms", "score", "label", *[f"p_{n}" for n in labels]]
        write_rows(args.out, rows, columns)
        heat_n = heatmap_pngs(Path(args.heatmaps), events, recog, artefact.manifest.output.heatmap_names) if args.heatmaps else 0
        if args.timeline:
            timeline_png(args.timeline, motion, events, rows, fps, Path(args.video).name)
    except (CaptureError, ArtefactError, BackendUnavailable) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # RuntimeError: DetectorUnavailable, matplotlib
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        micro = sum(e.kind == "micro" for e in events)
        print(f"{args.video}: {counters['frames']} frames at {fps:g} fps, {counters['tracks']} track(s): {micro} micro "
              f"({sum(r is not None for r in recog)} recognised by {backend.name}/{backend.precision}), "
              f"{len(events) - micro} macro → {args.out}" + (f", {heat_n} heatmap PNGs → {args.heatmaps}" if args.heatmaps else ""),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
