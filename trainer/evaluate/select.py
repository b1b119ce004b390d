"""`mfvan-eval select`: score one recipe variant on validation subjects the report never shows.

Why a command: a LOSO report is only honest if its recipe was chosen without its test folds.
This trains once on every subject except the validation ones (default the first five, the
folds `mfvan-eval loso --skip-folds 5` leaves out) and scores the fused and per-head logits
on them: UF1 and NLL (NLL separates variants that tie on a small set), as captured and
"posed": every validation pair under one fixed random similarity (rotation, scale, shift on
both frames, seeded), the turned and off-centre heads a live camera sees, so a recipe is not
chosen for frontal faces alone. The flow CNN baseline is scored the same way for reference.

    mfvan-eval select --config configs/train/loso_pairs_fusion.yaml --pairs runs/pairs/A48_42.npz \\
        --set joint.epochs=24 --set data.pose_jitter=[15,0.1,3] --log runs/select.jsonl
    mfvan-eval select --config ... --pairs ... --baseline offapex

One JSON line per run goes to stdout (and is appended to `--log`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pydantic import ValidationError

from engine.config.cli import add_config_args, config_from_args
from trainer.baselines import offapex
from trainer.config.train import TrainConfig
from trainer.evaluate.loso import load_pairs_npz
from trainer.evaluate.metrics import scores
from trainer.models import network_inputs
from trainer.train import PairSet, train
from trainer.train.loop import pose_jittered

POSE = (20.0, 0.1, 3.0)  # degrees, scale fraction, pixels: beyond the crops' own pose spread


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mfvan-eval select", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", required=True, help="pairs .npz (python -m trainer.synth.pairs)")
    p.add_argument("--val-subjects", default="5", help="validation subjects: a count N (the first N) or a comma list")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config field (YAML value), repeatable: the variant under test")
    p.add_argument("--baseline", choices=["offapex"], help="score this baseline instead of MFVAN")
    p.add_argument("--pose", default=",".join(str(v) for v in POSE), help="posed validation: degrees,scale,pixels")
    p.add_argument("--log", help="append the JSON line to this file")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: two variants share 2 cores)")
    add_config_args(p)
    return p


def overridden(cfg: TrainConfig, sets: Sequence[str]) -> tuple[TrainConfig, dict[str, Any]]:
    """The config with each SECTION.KEY=VALUE applied (VALUE read as YAML), validated as a whole."""
    d = cfg.model_dump()
    changes: dict[str, Any] = {}
    for item in sets:
        key, sep, text = item.partition("=")
        section, dot, field = key.partition(".")
        if not sep or not dot or not isinstance(d.get(section), dict) or field not in d[section]:
            raise ValueError(f"--set {item!r}: expected SECTION.KEY=VALUE naming a config field")
        d[section][field] = changes[key] = yaml.safe_load(text)
    return TrainConfig.model_validate(d), changes


def validation_split(data: PairSet, spec: str) -> tuple[PairSet, PairSet]:
    subjects = data.subject_list()
    val = set(subjects[: int(spec)]) if spec.isdigit() else {s.strip() for s in spec.split(",") if s.strip()}
    if not val or not val < set(subjects):
        raise ValueError(f"--val-subjects {spec!r}: need some, not all, of the {len(subjects)} subjects")
    return data.select_subjects(set(subjects) - val), data.select_subjects(val)


def _head_scores(logits: dict[str, torch.Tensor], y: np.ndarray, prefix: str) -> dict[str, float]:
    """UF1 and NLL of the fused logits and of each head's own (logits_scale1 -> scale1_uf1 ...)."""
    out: dict[str, float] = {}
    for name, v in logits.items():
        if name.startswith("logits"):
            tag = prefix + (name.removeprefix("logits").lstrip("_") or "fused")
            out[f"{tag}_uf1"] = round(scores(y, v.argmax(1).numpy(), v.shape[1])["uf1"], 4)
            out[f"{tag}_nll"] = round(float(torch.nn.functional.cross_entropy(v, torch.from_numpy(y))), 4)
    return out


def run(cfg: TrainConfig, tr: PairSet, val: PairSet, pose: Sequence[float], baseline: str | None) -> dict[str, Any]:
    posed_on, posed_ap = pose_jittered(val.onset, val.apex, list(pose), np.random.default_rng(123))
    posed = replace(val, onset=posed_on, apex=posed_ap)
    t0 = time.perf_counter()
    res: dict[str, Any] = {}
    if baseline == "offapex":
        predict = offapex.fit(tr, seed=cfg.seed)
        c = len(val.label_names)
        res["fused_uf1"] = round(scores(val.labels, predict(val), c)["uf1"], 4)
        offapex.forget(val.clips)  # the posed pairs share clip names with the captured ones
        res["posed_fused_uf1"] = round(scores(val.labels, predict(posed), c)["uf1"], 4)
    else:
        model = train(cfg, tr, device=torch.device("cpu"), progress=False)
        for prefix, part in (("", val), ("posed_", posed)):
            with torch.no_grad():
                first, apex = network_inputs(cfg.model, part.onset, part.apex)
                out = model(None, apex, motion=first) if model.motion else model(first, apex)
            res.update(_head_scores(out, part.labels, prefix))
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = config_from_args(args, TrainConfig)
    try:
        cfg, changes = overridden(cfg, args.set)
        pose = [float(v) for v in args.pose.split(",")]
        if len(pose) != 3:
            raise ValueError(f"--pose {args.pose!r}: expected degrees,scale,pixels")
        data = load_pairs_npz(args.pairs)
        if data.crop_size != cfg.model.crop_size:
            raise ValueError(f"crops are {data.crop_size}px, model.crop_size is {cfg.model.crop_size}")
        tr, val = validation_split(data, args.val_subjects)
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"mfvan-eval select: --set: {'.'.join(str(x) for x in first['loc'])}: {first['msg']}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"mfvan-eval select: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    res = {"variant": changes, "model": args.baseline or "mfvan", "val_subjects": val.subject_list(), "pose": pose,
           **run(cfg, tr, val, pose, args.baseline)}
    line = json.dumps(res)
    print(line, flush=True)
    if args.log:
        with Path(args.log).open("a") as fh:
            fh.write(line + "\n")
    return 0
