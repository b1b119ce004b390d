"""`mfvan-synth`: make the synthetic corpus, or `mfvan-synth preview` to draw a contact sheet.

    mfvan-synth --out DIR --subjects N --clips-per-subject M --seed S
    mfvan-synth preview --out sheet.png [--subject K] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.config.cli import add_config_args, config_from_args
from trainer.config.synth import SynthConfig


def _generate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mfvan-synth", description=__doc__.split("\n\n")[0],
                                epilog="`mfvan-synth preview --help` for the contact sheet.")
    p.add_argument("--out", required=False, help="output folder (CASME II layout)")
    p.add_argument("--subjects", type=int, help="number of identities (default from config: 31)")
    p.add_argument("--first-subject", type=int, help="first identity, 1-based (default 1): held-out identities")
    p.add_argument("--clips-per-subject", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_args(p)
    args = p.parse_args(argv)
    over = {k: v for k, v in {"subjects": args.subjects, "clips_per_subject": args.clips_per_subject,
                              "seed": args.seed, "workers": args.workers,
                              "first_subject": args.first_subject}.items() if v is not None}
    cfg = config_from_args(args, SynthConfig, over)
    if not args.out:
        p.error("--out is required")
    from trainer.media import MediaError
    from trainer.synth.corpus import PlanOptions, make_corpus
    from trainer.synth.identities import SPECS

    if cfg.first_subject - 1 + cfg.subjects > len(SPECS):
        print(f"mfvan-synth: only {len(SPECS)} distinct identities exist; --first-subject {cfg.first_subject} "
              f"--subjects {cfg.subjects} asks for more", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"mfvan-synth: {out} exists and is not a folder", file=sys.stderr)
        return 2
    if out.exists() and any(out.iterdir()) and not args.force:
        print(f"mfvan-synth: {out} is not empty (use --force to write into it)", file=sys.stderr)
        return 2
    opts = PlanOptions(fps=cfg.fps, micro_per_clip=cfg.micro_per_clip, micro_ms=cfg.micro_ms,
                       micro_px=cfg.micro_px, macro_prob=cfg.macro_prob, macro_ms=cfg.macro_ms,
                       macro_px=cfg.macro_px, blinks_per_clip=cfg.blinks_per_clip, gap_ms=cfg.gap_ms,
                       head_moves_per_clip=cfg.head_moves_per_clip, noise_sigma=cfg.noise_sigma,
                       lead_ms=cfg.lead_ms, drift_px=cfg.drift_px, rotation_deg=cfg.rotation_deg,
                       flicker=cfg.flicker, flicker_hz=cfg.flicker_hz, empty_clip_prob=cfg.empty_clip_prob)
    try:
        s = make_corpus(out, cfg.subjects, cfg.clips_per_subject, cfg.seed, opts, cfg.workers, cfg.face_px,
                        progress=not args.quiet, first_subject=cfg.first_subject)
    except (MediaError, OSError) as exc:
        print(f"mfvan-synth: {exc}", file=sys.stderr)
        return 1
    print(f"{out}: {s['subjects']} identities, {s['clips']} clips, {s['frames']} frames, "
          f"{s['micro']} micro, {s['macro']} macro, {s['blinks']} blinks in {s['seconds']} s "
          f"({s['frames'] / max(s['seconds'], 1e-9):.1f} frames/s, {s['cpu_seconds']} CPU s)")
    return 0


def _preview(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mfvan-synth preview",
                                description="contact sheet: onset, apex and amplified difference per event")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--corpus", help="corpus folder: draw its events (default: render fresh ones in memory)")
    p.add_argument("--subject", type=int, default=1, help="identity number (1-based) when rendering")
    p.add_argument("--clip", help="corpus clip as subXX/EPyy_01 (default: the first)")
    p.add_argument("--gain", type=float, default=12.0, help="difference amplification")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from trainer.media import MediaError
    from trainer.synth.preview import corpus_sheet, render_sheet

    try:
        if args.corpus:
            path = corpus_sheet(Path(args.corpus), Path(args.out), args.clip, args.gain)
        else:
            path = render_sheet(Path(args.out), args.subject - 1, args.seed, args.gain)
    except (MediaError, OSError, ValueError, KeyError) as exc:
        print(f"mfvan-synth preview: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "preview":
        return _preview(args[1:])
    return _generate(args)


if __name__ == "__main__":
    raise SystemExit(main())
