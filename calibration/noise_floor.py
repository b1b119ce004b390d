"""Per-subject noise floor and threshold from a neutral recording.

Why: the online floor needs k + warm-up frames (~0.5 s) of a face before it knows that face's
noise, and until then the spotter runs on a population prior (`spotter.floor_prior`) that is
too strict for a still, clean face and too lax for a noisy one. A subject recorded for ~10 s
sitting still (neutral face, normal blinking) seeds the floor, so spotting is calibrated from
the first frame, and the operator sees the subject's own motion level (docs/streamer.md,
"Calibration", for its measured effect on the first second of a clip). Run the same spotter pipeline with spotting disabled, collect the motion signal a(t)
of the face (the longest track), and store its robust centre and spread:

    python -m calibration.noise_floor --video neutral.mkv --out subject07.json
    mfvan-streamd --camera 0 --config streamd.yaml   # spotter.noise_floor_file: subject07.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from engine.config.cli import add_config_args, config_from_args
from streamer.config import StreamdConfig
from streamer.spotting.noise import MAD_TO_SIGMA, robust_floor


def noise_floor(video: str, cfg: StreamdConfig, fps: float | None = None, progress: bool = False) -> dict:
    from streamer.capture import open_source
    from streamer.spot_cli import replay

    src = open_source(video, None, fps)
    rate = src.fps
    src.close()
    _, pipe = replay(video, cfg, fps, None, progress, "noise floor", fixed_thresholds={}, record=True)
    if not pipe.spotters:
        raise ValueError(f"{video}: no face was tracked")
    track, sp = max(pipe.spotters.items(), key=lambda kv: len(kv[1].a_series))
    a = np.array([v for _, v in sp.a_series], np.float64)
    if a.size < 16:
        raise ValueError(f"{video}: only {a.size} motion samples (need a few seconds of video)")
    median, mad = robust_floor(a)
    threshold = median + cfg.spotter.mad_c * MAD_TO_SIGMA * mad
    return {"format": "mfvan-noise-floor/1", "source": str(video), "fps": rate, "k": pipe.k,
            "spot_size": cfg.spotter.spot_size, "motion_model": cfg.spotter.motion_model,
            "track": track, "samples": int(a.size),
            "median": median, "mad": mad, "c": cfg.spotter.mad_c, "threshold": threshold,
            "max": float(a.max()), "above_threshold": int((a > threshold).sum())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibration.noise_floor", description=__doc__.split("\n\n")[0])
    p.add_argument("--video", required=True, help="neutral recording of the subject (video or frame folder)")
    p.add_argument("--fps", type=float)
    p.add_argument("--out", required=True, help="JSON to write (use as spotter.noise_floor_file)")
    add_config_args(p)
    args = p.parse_args(argv)
    cfg = config_from_args(args, StreamdConfig)
    from streamer.capture import CaptureError

    try:
        result = noise_floor(args.video, cfg, args.fps, progress=True)
    except (CaptureError, ValueError) as exc:
        print(f"noise_floor: {exc}", file=sys.stderr)
        return 2
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.video}: median {result['median']:.4f}, MAD {result['mad']:.4f} → threshold {result['threshold']:.4f} "
          f"(crop px; {result['samples']} samples, {result['above_threshold']} above) → {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
