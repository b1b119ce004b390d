"""`mfvan-spot`: the streaming spotter run offline over a video or frame folder → events.jsonl.

The same Pipeline as the daemon, frame by frame, so offline numbers are the live numbers.
`--threshold published` swaps the online noise floor for the MEGC baseline rule
(mean + p·(max − mean) of the clip's motion signal, per track), which needs a first pass over
the whole clip: it exists for comparison with published results, not for live use.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

from engine.config.cli import add_config_args, config_from_args
from engine.process import setup_logging
from streamer.capture import CaptureError, Frame, open_source
from streamer.config import StreamdConfig
from streamer.pipeline import Pipeline
from streamer.spotting.noise import published_threshold
from streamer.spotting.spotter import SpottedEvent


def replay(path: str, cfg: StreamdConfig, fps: float | None, detector, progress: bool, desc: str,
         **pipe_kw) -> tuple[list[SpottedEvent], Pipeline]:
    from tqdm import tqdm

    src = open_source(path, None, fps)
    pipe = Pipeline(cfg.faces, cfg.spotter, src.fps, detector=detector, **{"keep_crops": False, **pipe_kw})
    total = len(src.paths) if hasattr(src, "paths") else int(src.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None
    events: list[SpottedEvent] = []
    period = 1e9 / src.fps
    try:
        for i, (img, ts) in enumerate(tqdm(src.frames(), total=total, desc=desc, unit="f", disable=not progress,
                                           leave=False)):
            events += pipe.process(Frame(i, ts if ts is not None else round(i * period), img))
        events += pipe.flush()
    finally:
        src.close()
    return events, pipe


def spot_video(path: str, cfg: StreamdConfig, fps: float | None = None, detector=None, progress: bool = False,
               noise_seed: tuple[float, float] | None = None) -> tuple[list[SpottedEvent], dict, float]:
    """Every event in one video or frame folder → (events, counters, fps)."""
    if cfg.spotter.threshold == "published":
        _, first = replay(path, cfg, fps, detector, progress, "pass 1/2", fixed_thresholds={}, record=True)
        thr = {tid: published_threshold([a for _, a in sp.a_series], cfg.spotter.published_p)
               for tid, sp in first.spotters.items()}
        events, pipe = replay(path, cfg, fps, detector, progress, "pass 2/2", fixed_thresholds=thr)
    else:
        events, pipe = replay(path, cfg, fps, detector, progress, Path(path).name, noise_seed=noise_seed)
    events.sort(key=lambda e: (e.onset, e.track))
    return events, pipe.counters(), pipe.fps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mfvan-spot", description="Spot micro- and macro-expressions in a video or "
                                "frame folder; one JSON line per event {track, onset, apex, offset, score, kind}.")
    p.add_argument("--video", required=True, metavar="PATH", help="video file or folder of frames")
    p.add_argument("--fps", type=float, help="frame rate (folders: default 200; videos: default the file's)")
    p.add_argument("--out", required=True, metavar="FILE.jsonl", help="where the events go ('-' = stdout)")
    p.add_argument("--threshold", choices=["online", "published"], help="override spotter.threshold")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    add_config_args(p)
    args = p.parse_args(argv)
    over = {"spotter": {"threshold": args.threshold}} if args.threshold else None
    cfg = config_from_args(args, StreamdConfig, over)
    setup_logging("WARNING")  # the capture and face code warn through logging
    try:
        from streamer.worker import load_noise_seed

        events, counters, fps = spot_video(args.video, cfg, args.fps, progress=not args.quiet,
                                           noise_seed=load_noise_seed(cfg.spotter.noise_floor_file))
    except CaptureError as exc:
        print(f"mfvan-spot: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # DetectorUnavailable: a face backend that is not installed
        print(f"mfvan-spot: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as exc:
        print(f"mfvan-spot: {exc}", file=sys.stderr)
        return 2
    lines = [json.dumps({**e.to_json(), "duration_ms": round(e.duration_ms, 1)}) for e in events]
    text = "".join(line + "\n" for line in lines)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
    if not args.quiet:
        kinds = {k: sum(e.kind == k for e in events) for k in ("micro", "macro")}
        print(f"{args.video}: {counters['frames']} frames at {fps:g} fps, {counters['tracks']} track(s): "
              f"{kinds['micro']} micro, {kinds['macro']} macro, {counters['too_short']} too short, "
              f"{counters['invalid']} invalid → {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
