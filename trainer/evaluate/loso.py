"""`mfvan-eval loso`: leave-one-subject-out for MFVAN and the baselines on the same folds,
optionally Table 3's ablation rows; writes report.json, confusion PNGs, tables, overlays.

    mfvan-eval loso --config configs/train/loso_synth.yaml --data /work/data/synth --out runs/loso
    mfvan-eval loso --config ... --ablation --ablation-folds 10 --out runs/loso

Models on the same folds: `mfvan` (the configured input form), `mfvan_apex` (the paper's
apex-only form, otherwise the same config), `offapex`, `lbptop`. With MFVAN and a baseline in
one report, `significance` holds MFVAN - best baseline (UF1) with a paired bootstrap over
subjects (95 % interval) and a Wilcoxon signed-rank test over folds. `--shard I/N` runs only
every N-th fold from the I-th (0-based), so N processes share the folds; a final run without
it reloads every saved fold and writes the whole report.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.config.cli import add_config_args, config_from_args
from trainer.baselines import lbptop, offapex
from trainer.cli_args import add_data_args, add_run_args
from trainer.config.train import TrainConfig
from trainer.evaluate import report as rep
from trainer.evaluate.metrics import confusion, per_class
from trainer.evaluate.protocol import (
    ABLATION_ROWS,
    FoldResult,
    cross_generator,
    fingerprint,
    fold_subjects,
    paired_difference,
    pooled,
    run_baseline_fold,
    run_folds,
    run_mfvan_fold,
    with_model,
)
from trainer.models import create_model, identity_removal_reaches_logits
from trainer.models.profile import profile
from trainer.train import PairSet, resolve_device

MODELS = ("mfvan", "mfvan_apex", "lbptop", "offapex")
BASELINES = ("lbptop", "offapex", "mfvan_apex")
BASELINE_FIT = {"lbptop": lbptop.fit, "offapex": offapex.fit}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mfvan-eval loso", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, "a crops .npz written by an earlier run (skips face cropping)")
    p.add_argument("--out", default="runs/loso", help="report folder (default: runs/loso)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    p.add_argument("--max-folds", type=int, help="evaluate only the first N subjects' folds (default eval.max_folds)")
    p.add_argument("--skip-folds", type=int, default=0, metavar="K",
                   help="leave out the first K subjects' folds (e.g. the folds a variant was chosen on), counted before --shard")
    p.add_argument("--ablation", action="store_true", help="also run Table 3's rows and write ablation.md")
    p.add_argument("--ablation-folds", type=int, default=0, help="folds for the ablation rows (0 = same as --max-folds)")
    p.add_argument("--ablation-only", action="store_true", help="run only the ablation rows (no model comparison)")
    p.add_argument("--cross", metavar="PAIRS", help="instead of LOSO: train on --pairs without PAIRS' subjects, test on "
                   "them from both sets (the cross-generator check; writes cross_generator.json/.md)")
    p.add_argument("--saved-only", action="store_true", help="report only folds already saved under --out (train nothing)")
    p.add_argument("--shard", default="", metavar="I/N", help="run only folds I, I+N, ... (0-based), to share folds among N processes")
    add_run_args(p)
    add_config_args(p)
    return p


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def save_pairs(path: Path, data: PairSet) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp, onset=data.onset, apex=data.apex, labels=data.labels, subjects=data.subjects.astype(str),
        clips=np.array(data.clips, dtype=str), label_names=np.array(data.label_names, dtype=str),
        frames=data.frames, frame_owner=data.frame_owner, order=np.array("BGR"),
    )
    tmp.replace(path)


def load_pairs_npz(path: str | Path) -> PairSet:
    with np.load(path, allow_pickle=False) as z:
        # files written before the one crop path hold RGB crops (no "order" key): made BGR here
        flip = (lambda a: np.ascontiguousarray(a[..., ::-1])) if "order" not in z.files else (lambda a: a)
        return PairSet(
            onset=flip(z["onset"]), apex=flip(z["apex"]), labels=z["labels"], subjects=z["subjects"].astype(object),
            clips=z["clips"].tolist(), label_names=z["label_names"].tolist(), frames=flip(z["frames"]),
            frame_owner=z["frame_owner"],
        )


def load_data(cfg: TrainConfig, pairs: str | None, progress: bool) -> tuple[PairSet, list[str]]:
    if pairs:
        return load_pairs_npz(pairs), []
    from trainer.evaluate.datasets import load_samples
    from trainer.train.crops import build_pairs

    samples = load_samples(cfg.data)
    return build_pairs(
        samples, cfg.data.labels, cfg.model.crop_size, cfg.data.cache_dir or None, cfg.data.pretrain_frames, cfg.data.kind, progress
    )


def _model_report(name: str, results: list[FoldResult], data: PairSet, out: Path, title: str) -> dict[str, Any]:
    c = len(data.label_names)
    y_true = np.concatenate([r.y_true for r in results])
    y_pred = np.concatenate([r.y_pred for r in results])
    cm = confusion(y_true, y_pred, c)
    rep.confusion_png(out / f"confusion_{name}.png", cm, data.label_names, title)
    s = pooled(results, c)
    s["per_class"] = per_class(y_true, y_pred, data.label_names)
    s["confusion"] = cm.tolist()
    return s


def _overlays(results: list[FoldResult], data: PairSet, out: Path, k: int) -> None:
    """Up to k held-out samples, correct predictions first, spread over classes."""
    picks: list[tuple[int, int, int]] = []  # (full index, true, pred)
    rows = [(int(r.index[j]), int(r.y_true[j]), int(r.y_pred[j]), j, r) for r in results for j in range(len(r.y_true))]
    rows.sort(key=lambda t: (t[1] != t[2], t[0]))
    seen: dict[int, int] = {}
    heat = []
    for idx, yt, yp, j, r in rows:
        if len(picks) >= k or r.heatmaps is None:
            continue
        if seen.get(yt, 0) >= max(1, k // len(data.label_names)):
            continue
        seen[yt] = seen.get(yt, 0) + 1
        picks.append((idx, yt, yp))
        heat.append(r.heatmaps[j])
    if picks:
        names = data.label_names
        titles = [f"{data.clips[i]}\ntrue {names[t]} / pred {names[p]}" for i, t, p in picks]
        rgb = data.apex[[i for i, _, _ in picks]][..., ::-1]  # wire crops are BGR; matplotlib shows RGB
        rep.overlays_png(out / "attention_overlays.png", rgb, np.stack(heat), titles)


def run_loso(
    cfg: TrainConfig,
    data: PairSet,
    out: Path,
    models: Sequence[str] = MODELS,
    max_folds: int = 0,
    ablation: bool = False,
    ablation_folds: int = 0,
    progress: bool = True,
    skipped: Sequence[str] = (),
    shard: tuple[int, int] = (0, 1),
    saved_only: bool = False,
    skip_folds: int = 0,
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    subjects = fold_subjects(data, max_folds)[skip_folds:][shard[0] :: shard[1]]
    c = cfg.model.num_classes
    report: dict[str, Any] = {
        "protocol": {
            "kind": "leave-one-subject-out",
            "epochs": cfg.eval.protocol,
            "note": "fixed epochs from the config; the test subject never selects an epoch or a hyper-parameter"
            if cfg.eval.protocol == "fixed_epochs"
            else f"joint epochs chosen by macro-F1 on {cfg.eval.nested_val_subjects} validation subjects drawn from each fold's training subjects",
            "subjects": len(data.subject_list()),
            "folds_run": len(subjects),
            **({"folds_skipped": fold_subjects(data, 0)[:skip_folds]} if skip_folds else {}),
            "samples": len(data),
            "class_counts": {n: int((data.labels == i).sum()) for i, n in enumerate(data.label_names)},
            "skipped_samples": len(skipped),
        },
        "dataset": cfg.data.dataset,
        "labels": data.label_names,
        "config": cfg.model_dump(mode="json"),
        "machine": {"platform": platform.platform(), "device": str(device), "torch_threads": torch.get_num_threads()},
        "models": {},
    }
    rep.write_json(out / "skipped.json", list(skipped))
    fold_root = out / "folds"
    all_results: dict[str, list[FoldResult]] = {}
    for name in models:
        if name in ("mfvan", "mfvan_apex"):
            # the apex image is all the apex-only form sees, so a motion-only recipe's appearance: false does not carry over
            mcfg = cfg if name == "mfvan" else with_model(cfg, input_form="apex", appearance=True)
            results = run_folds(name, subjects, lambda s, c_=mcfg: run_mfvan_fold(c_, data, s, device, False), fold_root / name,
                                progress, log, fingerprint(mcfg, "mfvan"), saved_only)
            if not results:
                report.setdefault("not_run", []).append(name)
                continue
            model = create_model(mcfg.model)
            report["models"][name] = {**_model_report(name, results, data, out, f"MFVAN ({mcfg.model.input_form})"),
                                      "input_form": mcfg.model.input_form, "profile": profile(model)}
            if name == "mfvan":
                _overlays(results, data, out, cfg.eval.overlays)
        else:
            results = run_folds(name, subjects, lambda s, n=name: run_baseline_fold(BASELINE_FIT[n], data, s, cfg.seed), fold_root / name,
                                progress, log, fingerprint(None, name, cfg.seed), saved_only)
            if not results:
                report.setdefault("not_run", []).append(name)
                continue
            report["models"][name] = _model_report(name, results, data, out, name)
        all_results[name] = results
        rep.write_json(out / "report.json", report)
    base = [b for b in BASELINES if b in all_results]
    if "mfvan" in all_results and base:
        best = max(base, key=lambda b: report["models"][b]["uf1"])
        report["significance"] = {"a": "mfvan", "b": best, "b_is": "the best baseline by pooled UF1",
                                  **paired_difference(all_results["mfvan"], all_results[best], c, seed=cfg.seed)}
        rep.write_json(out / "report.json", report)
    cols = ["model", "folds_run", "n", "accuracy", "macro_f1", "uf1", "uar", "fold_seconds_mean", "total_seconds"]
    rows: list[dict[str, Any]] = [{"model": k, **{c_: v.get(c_) for c_ in cols[2:]}, "folds_run": len(v["folds"])}
                                  for k, v in report["models"].items()]
    text = f"# LOSO on {cfg.data.dataset}: {len(subjects)} folds of {len(data.subject_list())} subjects, {len(data)} samples\n\n"
    if skip_folds:
        text += f"Folds of the first {skip_folds} subjects left out (`--skip-folds {skip_folds}`).\n\n"
    if saved_only:
        text += "Saved folds only (`--saved-only`): each model's folds_run says how many of them it has.\n\n"
    text += rep.markdown_table(rows, cols)
    for k, v in report["models"].items():
        text += f"\n## {k}: per class\n\n" + rep.markdown_table(v["per_class"], ["class", "precision", "recall", "f1", "support"])
    if "significance" in report:
        g = report["significance"]
        text += (f"\n## MFVAN - best baseline ({g['b']}), {g['subjects']} subjects\n\n"
                 f"UF1 difference {g['delta_uf1']:+.4f}, 95 % paired-bootstrap interval over subjects "
                 f"[{g['ci95'][0]:+.4f}, {g['ci95'][1]:+.4f}] ({g['bootstrap']} resamples); Wilcoxon signed-rank "
                 f"p = {g['wilcoxon_p']:.3g} over per-fold macro-F1 (MFVAN better in {g['folds_a_better']}, "
                 f"worse in {g['folds_b_better']}, tied in {g['folds_tied']} folds)\n")
    if report["models"]:
        (out / "results.md").write_text(text)
    if ablation:
        ab_subjects = fold_subjects(data, ablation_folds or max_folds)[skip_folds:][shard[0] :: shard[1]]
        rows_cfg = []
        first_of: dict[str, str] = {}  # fingerprint -> the first row that trains it
        same_as: dict[str, str] = {}
        for row, changes in ABLATION_ROWS:
            rcfg = with_model(cfg, **changes)
            itself = rcfg.model == cfg.model  # the configured model: it reuses the mfvan folds instead of training again
            if not itself and rcfg.model.identity_removal and not identity_removal_reaches_logits(rcfg.model):
                rcfg = with_model(rcfg, identity_removal=False)  # the same network: train it once
            fp = fingerprint(rcfg, "mfvan")
            first = first_of.setdefault(fp, row)
            folder = fold_root / ("mfvan" if itself else f"ablation_{first}")
            if first != row:
                same_as[row] = first
            rows_cfg.append((row, rcfg, folder, fp))
        per_row: dict[str, list[FoldResult]] = {row: [] for row, *_ in rows_cfg}
        # fold-major order: an interrupted run leaves every row with the same finished folds
        for subject in ab_subjects:
            for row, rcfg, folder, fp in rows_cfg:
                per_row[row] += run_folds(row, [subject], lambda s, rc=rcfg: run_mfvan_fold(rc, data, s, device, False),
                                          folder, False, log, fp, saved_only)
        ab_rows = []
        cols_ab = ["row", "folds_run", "n", "accuracy", "macro_f1", "uf1", "uar", "fold_seconds_mean"]
        # each row against the best baseline run beside it, on the folds both have (the margin per row)
        best_b = max(base, key=lambda b: report["models"][b]["uf1"]) if base else None
        md_rows = []
        for row, *_ in rows_cfg:
            s = pooled(per_row[row], c)
            entry = {"row": row, "folds_run": len(per_row[row]), **{k: s[k] for k in cols_ab[2:]},
                     **({"same_network_as": same_as[row]} if row in same_as else {})}
            md = dict(entry)
            if best_b and per_row[row]:
                g = paired_difference(per_row[row], all_results[best_b], c, seed=cfg.seed)
                entry["vs_baseline"] = {k: g[k] for k in ("delta_uf1", "ci95", "wilcoxon_p", "subjects")}
                md["vs_baseline"] = (f"{g['delta_uf1']:+.4f} [{g['ci95'][0]:+.4f}, {g['ci95'][1]:+.4f}], "
                                     f"p {g['wilcoxon_p']:.2g}, {g['subjects']} folds")
            ab_rows.append(entry)
            md_rows.append(md)
        if best_b:
            cols_ab.insert(6, "vs_baseline")
        report["ablation"] = {"folds": len(ab_subjects), "rows": ab_rows, **({"baseline": best_b} if best_b else {})}
        shared = "".join(f"- {r}: identity removal reaches no logit here (motion alone into the global head and scale 1, "
                         f"no scale 2-3), so it is the network of {o}; its folds are {o}'s.\n" for r, o in same_as.items())
        (out / "ablation.md").write_text(
            f"# Table 3 rows, LOSO on {cfg.data.dataset} ({len(ab_subjects)} folds, input form {cfg.model.input_form})\n\n"
            + rep.markdown_table(md_rows, cols_ab)
            + (f"\n{shared}" if shared else "")
            + (f"\nvs_baseline: the row's UF1 minus {best_b}'s (the best baseline) on the folds both have, 95 % "
               "paired-bootstrap interval over subjects, Wilcoxon p over per-fold macro-F1.\n" if best_b else "")
        )
        rep.write_json(out / "report.json", report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = config_from_args(args, TrainConfig)
    upd: dict[str, Any] = {}
    if args.data or args.annotations:
        upd["data"] = cfg.data.model_copy(update={k: v for k, v in (("root", args.data), ("annotations", args.annotations)) if v})
    if args.device:
        upd["device"] = args.device
    cfg = cfg.model_copy(update=upd)
    models = [] if args.ablation_only else [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        print(f"mfvan-eval loso: unknown model(s) {bad}; choose from {', '.join(MODELS)}", file=sys.stderr)
        return 2
    try:
        shard = (0, 1)
        if args.shard:
            i, n = (int(x) for x in args.shard.split("/"))
            if not 0 <= i < n:
                raise ValueError
            shard = (i, n)
    except ValueError:
        print(f"mfvan-eval loso: --shard {args.shard!r}: expected I/N with 0 <= I < N", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    out = Path(args.out)
    try:
        device = resolve_device(cfg.device)
        data, skipped = load_data(cfg, args.pairs, not args.no_progress)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"mfvan-eval loso: {exc}", file=sys.stderr)
        return 2
    if data.crop_size != cfg.model.crop_size:
        print(f"mfvan-eval loso: crops are {data.crop_size}px, model.crop_size is {cfg.model.crop_size}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    if not args.pairs:
        save_pairs(out / "pairs.npz", data)
    log(f"{len(data)} samples, {len(data.subject_list())} subjects, {len(skipped)} skipped; device {device}")
    if args.cross:
        try:
            other = load_pairs_npz(args.cross)
            res = cross_generator(cfg, data, other, device, {m: BASELINE_FIT[m] for m in models if m in BASELINE_FIT})
        except (OSError, ValueError) as exc:
            print(f"mfvan-eval loso: --cross: {exc}", file=sys.stderr)
            return 2
        res["config"] = cfg.model_dump(mode="json")
        rep.write_json(out / "cross_generator.json", res)
        rows = [{"model": k, "same_uf1": v["same_generator"]["uf1"], "other_uf1": v["other_generator"]["uf1"],
                 "drop_uf1": v["drop_uf1"], "train_seconds": v["train_seconds"]} for k, v in res["models"].items()]
        text = (f"# Cross-generator check: trained on {len(res['train_subjects'])} subjects of {args.pairs}, tested on "
                f"{', '.join(res['test_subjects'])} from it and from {args.cross}\n\n"
                + rep.markdown_table(rows, ["model", "same_uf1", "other_uf1", "drop_uf1", "train_seconds"]))
        (out / "cross_generator.md").write_text(text)
        print(text)
        return 0
    max_folds = cfg.eval.max_folds if args.max_folds is None else args.max_folds
    t0 = time.perf_counter()
    report = run_loso(cfg, data, out, models, max_folds, args.ablation or args.ablation_only, args.ablation_folds, not args.no_progress,
                      skipped, shard, args.saved_only, max(0, args.skip_folds))
    log(f"done in {time.perf_counter() - t0:.0f}s -> {out}/report.json")
    print(json.dumps({k: {m: v[m] for m in ("accuracy", "macro_f1", "uf1", "uar")} for k, v in report["models"].items()}, indent=1))
    if "ablation" in report:
        print((out / "ablation.md").read_text())
    return 0
