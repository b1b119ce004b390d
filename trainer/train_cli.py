"""`mfvan-train`: the three MFVAN stages on every sample of a dataset, resumable.

    mfvan-train --config configs/train/mfvan.yaml --data /work/data/synth --out runs/train \
        --export trainer/assets/mfvan_demo.ckpt

Stages: pretrain (teacher reconstructs every frame, Eq. 1) -> remove (teacher + student map
apex -> onset, Eqs. 2-4) -> joint (Eq. 9). Each writes `<out>/<stage>.ckpt` after every
epoch; rerunning the same command resumes where it stopped (`--no-resume` starts over).

Several GPUs (DDP):  torchrun --standalone --nproc_per_node=4 -m trainer.train_cli --device cuda ...
(each rank trains on its shard of every epoch; rank 0 writes checkpoints).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from engine.config.cli import add_config_args, config_from_args
from engine.process import setup_logging
from trainer.checkpoint import CheckpointError, save_checkpoint
from trainer.cli_args import add_data_args, add_run_args
from trainer.config.train import TrainConfig
from trainer.train import STAGES, resolve_device, train
from trainer.train.distributed import setup, teardown


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mfvan-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, "a crops .npz from `mfvan-eval loso` (skips face cropping)")
    p.add_argument("--out", default="runs/train", help="stage checkpoints go here (default runs/train)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma list, in order (default {','.join(STAGES)})")
    p.add_argument("--no-resume", action="store_true", help="ignore existing stage checkpoints")
    p.add_argument("--export", metavar="CKPT", help="also write the final model (no optimiser state) here")
    add_run_args(p)
    add_config_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = config_from_args(args, TrainConfig)
    setup_logging("WARNING")
    upd = {}
    if args.data or args.annotations:
        upd["data"] = cfg.data.model_copy(update={k: v for k, v in (("root", args.data), ("annotations", args.annotations)) if v})
    if args.device:
        upd["device"] = args.device
    cfg = cfg.model_copy(update=upd)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if any(s not in STAGES for s in stages):
        print(f"mfvan-train: --stages takes {', '.join(STAGES)}; got {args.stages!r}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    from trainer.evaluate.loso import load_data

    try:
        device = resolve_device(cfg.device)
        d = setup(device)
        if d.active and device.type == "cuda":
            device = torch.device("cuda", d.local_rank)
        data, skipped = load_data(cfg, args.pairs, not args.no_progress and d.main)
        if data.crop_size != cfg.model.crop_size:
            raise ValueError(f"crops are {data.crop_size}px, model.crop_size is {cfg.model.crop_size}")
        if d.main:
            print(f"mfvan-train: {len(data)} samples from {len(data.subject_list())} subjects ({len(skipped)} skipped), device {device}", file=sys.stderr)
        t0 = time.perf_counter()

        def on_epoch(stage: str, epoch: int, m: dict[str, float]) -> None:
            if d.main:
                print(f"{stage} epoch {epoch}: " + " ".join(f"{k}={v:.4f}" for k, v in m.items()), file=sys.stderr, flush=True)

        model = train(cfg, data, out_dir=args.out, device=device, stages=stages, resume=not args.no_resume,
                      progress=not args.no_progress, dist_info=d, on_epoch=on_epoch)
        if args.export and d.main:
            save_checkpoint(args.export, model.cpu(), cfg.model, data.label_names, train_config=cfg.model_dump(mode="json"),
                            stage="joint", epoch=cfg.joint.epochs,
                            extra={"trained_on": f"{cfg.data.dataset} {cfg.data.root}", "samples": len(data),
                                   "subjects": len(data.subject_list()), "train_seconds": round(time.perf_counter() - t0, 1)})
            print(f"mfvan-train: wrote {args.export} ({Path(args.export).stat().st_size / 2**20:.1f} MB)", file=sys.stderr)
        teardown(d)
    except (OSError, ValueError, RuntimeError, CheckpointError) as exc:
        print(f"mfvan-train: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
