"""`python -m trainer.preprocess`: fill the aligned-crop cache for a dataset.

    python -m trainer.preprocess --dataset synth --data /work/data/synth --cache .cache/mfvan/crops
"""

from __future__ import annotations

import argparse
import sys

from engine.config.cli import add_config_args, config_from_args
from trainer.config.train import TrainConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.preprocess", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=["casme2", "samm", "smic", "synth"], help="overrides data.dataset")
    p.add_argument("--data", help="dataset root (overrides data.root)")
    p.add_argument("--cache", help="cache folder (overrides data.cache_dir)")
    p.add_argument("--frames", action="store_true", help="also cache every frame onset..offset")
    p.add_argument("--every", type=int, default=1, help="with --frames: keep every n-th frame")
    p.add_argument("--quiet", action="store_true")
    add_config_args(p)
    args = p.parse_args(argv)
    data = {k: v for k, v in {"dataset": args.dataset, "root": args.data, "cache_dir": args.cache}.items() if v}
    cfg = config_from_args(args, TrainConfig, {"data": data} if data else None)
    from trainer.datasets import LOADERS
    from trainer.preprocess.cache import CacheOptions, CacheReport, build_cache

    if not cfg.data.root:
        p.error("no dataset root: --data DIR or data.root in the config")
    try:
        samples = LOADERS[cfg.data.dataset](cfg.data.root)
    except (FileNotFoundError, ValueError) as exc:
        print(f"trainer.preprocess: {exc}", file=sys.stderr)
        return 1
    report = CacheReport()
    opts = CacheOptions(crop_size=cfg.model.crop_size, frames=args.frames, every=args.every)
    build_cache(samples, cfg.data.cache_dir, opts, progress=not args.quiet, report=report)
    print(f"{cfg.data.cache_dir}: {report.built} built, {report.reused} reused, {len(report.failed)} failed")
    for line in report.failed[:20]:
        print(f"  failed: {line}", file=sys.stderr)
    return 0 if not report.failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
