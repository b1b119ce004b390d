"""LOSO folds for MFVAN, its ablation rows and the baselines: one held-out subject per fold.

Honesty rules (DESIGN §7): every model trains only on the other subjects; epochs are fixed
in the config, or (protocol "nested") chosen by macro-F1 on validation subjects drawn from
the TRAINING subjects of that fold, then the model is retrained on all training subjects for
that many epochs. The test subject is never used to pick anything.

Per-fold predictions are saved as `<out>/folds/<model>/<subject>.npz`, so an interrupted run
resumes at the next fold.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from trainer.config.train import ModelConfig, TrainConfig
from trainer.evaluate.metrics import scores
from trainer.models import create_model
from trainer.train import PairSet, predict, train

ABLATION_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("Global", {"identity_removal": False, "scales": []}),
    ("Global+RI", {"identity_removal": True, "scales": []}),
    ("Global+scale1", {"identity_removal": False, "scales": [1]}),
    ("Global+scale1+RI", {"identity_removal": True, "scales": [1]}),
    ("Global+scale1,2", {"identity_removal": False, "scales": [1, 2]}),
    ("Global+scale1,2+RI", {"identity_removal": True, "scales": [1, 2]}),
    ("Global+scale1,2,3", {"identity_removal": False, "scales": [1, 2, 3]}),
    ("Global+scale1,2,3+RI", {"identity_removal": True, "scales": [1, 2, 3]}),
]


@dataclass
class FoldResult:
    subject: str
    y_true: np.ndarray
    y_pred: np.ndarray
    seconds: float
    probs: np.ndarray | None = None
    heatmaps: np.ndarray | None = None
    epochs: int | None = None
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # positions in the full set


def fold_subjects(data: PairSet, max_folds: int) -> list[str]:
    subs = data.subject_list()
    return subs[:max_folds] if max_folds else subs


def with_model(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    model = ModelConfig.model_validate({**cfg.model.model_dump(), **changes})
    return cfg.model_copy(update={"model": model})


def _nested_epochs(cfg: TrainConfig, tr: PairSet, fold_seed: int, device: torch.device) -> int:
    subs = tr.subject_list()
    rng = np.random.default_rng(fold_seed)
    k = min(cfg.eval.nested_val_subjects, max(1, len(subs) - 1))
    val = set(rng.choice(subs, size=k, replace=False).tolist())
    inner, held = tr.select_subjects(set(subs) - val), tr.select_subjects(val)
    model = create_model(cfg.model)
    f1s: list[float] = []

    def on_epoch(stage: str, _epoch: int, _m: dict[str, float]) -> None:
        if stage == "joint":
            p, _ = predict(model, held, device)
            f1s.append(scores(held.labels, p.argmax(1), cfg.model.num_classes)["macro_f1"])

    train(cfg, inner, device=device, progress=False, model=model, on_epoch=on_epoch)
    return int(np.argmax(f1s)) + 1 if f1s else cfg.joint.epochs


def run_mfvan_fold(cfg: TrainConfig, data: PairSet, subject: str, device: torch.device, progress: bool) -> FoldResult:
    t0 = time.perf_counter()
    test_idx = np.flatnonzero(data.subjects == subject)
    tr, te = data.select_subjects(set(data.subject_list()) - {subject}), data.take(test_idx)
    epochs = cfg.joint.epochs
    if cfg.eval.protocol == "nested":
        epochs = _nested_epochs(cfg, tr, cfg.seed + hash_subject(subject), device)
    model = train(cfg, tr, device=device, progress=progress, joint_epochs=epochs)
    probs, heat = predict(model, te, device)
    return FoldResult(subject, te.labels, probs.argmax(1), time.perf_counter() - t0, probs, heat, epochs, test_idx)


def run_baseline_fold(fit: Callable[..., Callable[[PairSet], np.ndarray]], data: PairSet, subject: str, seed: int) -> FoldResult:
    t0 = time.perf_counter()
    test_idx = np.flatnonzero(data.subjects == subject)
    tr, te = data.select_subjects(set(data.subject_list()) - {subject}), data.take(test_idx)
    pred = fit(tr, seed=seed)(te)
    return FoldResult(subject, te.labels, np.asarray(pred), time.perf_counter() - t0, index=test_idx)


FOLD_FORMAT = 2  # bump when a config default changes value (see fingerprint)


def fingerprint(cfg: TrainConfig | None, model: str, seed: int = 0) -> str:
    """What decides a fold's result: the model name and its config (baselines: the seed).

    Only fields that differ from their defaults enter it: a new option whose default keeps the
    old behaviour (how every option is added) leaves the folds computed before it valid. A
    change of a default's *value* must therefore bump FOLD_FORMAT."""
    import hashlib
    import json

    dump = cfg.model_dump(mode="json", exclude_defaults=True) if cfg else None
    blob = json.dumps({"model": model, "cfg": dump, "seed": seed, "format": FOLD_FORMAT}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def hash_subject(subject: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(subject)) % 100_003


def run_folds(
    name: str,
    subjects: list[str],
    one_fold: Callable[[str], FoldResult],
    fold_dir: Path | None,
    progress: bool,
    log: Callable[[str], None] = print,
    fingerprint: str = "",
    saved_only: bool = False,
) -> list[FoldResult]:
    """Run (or reload) every fold of one model; log each fold's time and accuracy.

    A saved fold is reused only if its `fingerprint` (hash of the config that made it)
    matches, so a changed config never reports stale folds. A fold saved with another config is
    never deleted (it may be hours of CPU): a training run moves it to `stale/` beside the folds
    and recomputes it; a `saved_only` run leaves it where it is and reports without it."""
    results = []
    for subject in tqdm(subjects, desc=f"LOSO {name}", disable=not progress):
        path = fold_dir / f"{subject}.npz" if fold_dir else None
        if path is not None and path.exists() and fingerprint:
            with np.load(path, allow_pickle=False) as z:
                saved = str(z["fingerprint"]) if "fingerprint" in z else ""
            if saved and saved != fingerprint:
                if saved_only:
                    log(f"{name} fold {subject}: saved with another config ({saved}), left as is and not reported")
                    continue
                stale = path.parent / "stale" / f"{subject}.{saved}.npz"
                stale.parent.mkdir(exist_ok=True)
                path.replace(stale)
                log(f"{name} fold {subject}: saved with another config, moved to {stale}; recomputing")
        if saved_only and (path is None or not path.exists()):
            continue  # report what ran: a fold nobody computed is left out, never trained here
        if path is not None and path.exists():
            with np.load(path, allow_pickle=False) as z:
                r = FoldResult(
                    subject, z["y_true"], z["y_pred"], float(z["seconds"]),
                    z["probs"] if "probs" in z else None, z["heatmaps"] if "heatmaps" in z else None,
                    int(z["epochs"]) if "epochs" in z else None, z["index"],
                )
        else:
            r = one_fold(subject)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                arrays: dict[str, Any] = {"y_true": r.y_true, "y_pred": r.y_pred, "seconds": r.seconds, "index": r.index,
                                          "fingerprint": np.array(fingerprint)}
                if r.probs is not None:
                    arrays["probs"], arrays["heatmaps"] = r.probs, r.heatmaps
                if r.epochs is not None:
                    arrays["epochs"] = r.epochs
                tmp = path.with_suffix(".tmp.npz")
                np.savez(tmp, **arrays)
                tmp.replace(path)
        acc = float((r.y_true == r.y_pred).mean()) if len(r.y_true) else float("nan")
        log(f"{name} fold {subject}: n={len(r.y_true)} acc={acc:.3f} time={r.seconds:.1f}s")
        results.append(r)
    return results


def pooled(results: list[FoldResult], num_classes: int) -> dict[str, Any]:
    y_true = np.concatenate([r.y_true for r in results]) if results else np.zeros(0, np.int64)
    y_pred = np.concatenate([r.y_pred for r in results]) if results else np.zeros(0, np.int64)
    s = scores(y_true, y_pred, num_classes)
    s["fold_seconds_mean"] = float(np.mean([r.seconds for r in results])) if results else float("nan")
    s["total_seconds"] = float(sum(r.seconds for r in results))
    s["folds"] = [
        {"subject": r.subject, **{k: v for k, v in scores(r.y_true, r.y_pred, num_classes).items() if k in ("n", "accuracy", "macro_f1")},
         "seconds": round(r.seconds, 2), **({"epochs": r.epochs} if r.epochs is not None else {})}
        for r in results
    ]
    return s


def paired_difference(a: list[FoldResult], b: list[FoldResult], num_classes: int, n_boot: int = 2000,
                      seed: int = 0) -> dict[str, Any]:
    """Is model a better than model b on these folds? Both must hold the same subjects.

    Paired bootstrap over subjects (the unit LOSO generalises over): draw the subjects with
    replacement, pool both models' held-out predictions of the drawn subjects, take the UF1
    difference; the 2.5/97.5 percentiles are the 95 % interval. Beside it the Wilcoxon
    signed-rank test on the per-subject macro-F1 differences (scipy; zero differences dropped
    as in Wilcoxon's own treatment). Why subjects and not samples: samples of one subject are
    not independent, so a sample bootstrap would give a falsely narrow interval.
    """
    from scipy.stats import wilcoxon

    by_a, by_b = {r.subject: r for r in a}, {r.subject: r for r in b}
    subjects = sorted(set(by_a) & set(by_b))
    if not subjects:
        raise ValueError("no common folds to compare")
    for s in subjects:
        if not np.array_equal(by_a[s].y_true, by_b[s].y_true):
            raise ValueError(f"fold {s}: the two models were scored on different samples")

    ra, rb = [by_a[s] for s in subjects], [by_b[s] for s in subjects]

    def confusions(rs: list[FoldResult]) -> np.ndarray:  # (subjects, C, C) counts, true x predicted
        out = np.zeros((len(rs), num_classes, num_classes))
        for k, r in enumerate(rs):
            np.add.at(out[k], (r.y_true, r.y_pred), 1)
        return out

    def uf1(cm: np.ndarray) -> np.ndarray:
        """UF1 of pooled confusions (..., C, C): mean F1 over the classes that occur (as scores())."""
        tp = np.diagonal(cm, axis1=-2, axis2=-1)
        true, pred = cm.sum(-1), cm.sum(-2)
        f1 = np.divide(2 * tp, true + pred, out=np.zeros_like(tp), where=(true + pred) > 0)
        present = true > 0
        return (f1 * present).sum(-1) / np.maximum(present.sum(-1), 1)

    ca, cb = confusions(ra), confusions(rb)
    delta = float(uf1(ca.sum(0)) - uf1(cb.sum(0)))
    rng = np.random.default_rng(seed)
    # each resample = how many times each subject is drawn; pooled confusion = weighted sum
    weights = np.stack([np.bincount(rng.integers(0, len(subjects), len(subjects)), minlength=len(subjects))
                        for _ in range(n_boot)]).astype(float)
    boots = uf1(np.einsum("bs,sij->bij", weights, ca)) - uf1(np.einsum("bs,sij->bij", weights, cb))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    per = np.array([scores(x.y_true, x.y_pred, num_classes)["macro_f1"] - scores(y.y_true, y.y_pred, num_classes)["macro_f1"]
                    for x, y in zip(ra, rb, strict=True)])
    nz = per[np.abs(per) > 1e-12]
    p = float(wilcoxon(nz).pvalue) if len(nz) >= 1 else 1.0
    return {"subjects": len(subjects), "delta_uf1": float(delta), "ci95": [float(lo), float(hi)], "bootstrap": n_boot,
            "wilcoxon_p": p, "folds_a_better": int((per > 1e-12).sum()), "folds_b_better": int((per < -1e-12).sum()),
            "folds_tied": int(len(per) - len(nz))}


def cross_generator(cfg: TrainConfig, data: PairSet, other: PairSet, device: torch.device,
                    baselines: dict[str, Callable[..., Callable[[PairSet], np.ndarray]]] | None = None) -> dict[str, Any]:
    """Train on `data` without the subjects of `other`, test on those subjects twice: drawn by
    the same generator (`data`) and by another (`other`); the drop is the generator's share.

    Why the same held-out subjects on both sides: then the drop measures the change of
    generator alone, not a change of faces.
    """
    held = set(other.subject_list())
    missing = held - set(data.subject_list())
    if missing:
        raise ValueError(f"the training set has no {sorted(missing)}: the same-generator side needs them")
    tr, same = data.select_subjects(set(data.subject_list()) - held), data.select_subjects(held)
    c = cfg.model.num_classes
    out: dict[str, Any] = {"train_subjects": tr.subject_list(), "test_subjects": sorted(held),
                           "train_samples": len(tr), "same_samples": len(same), "other_samples": len(other), "models": {}}
    t0 = time.perf_counter()
    model = train(cfg, tr, device=device, progress=False)
    fits: dict[str, Callable[[PairSet], np.ndarray]] = {"mfvan": lambda d: predict(model, d, device)[0].argmax(1)}
    secs = {"mfvan": time.perf_counter() - t0}
    for name, fit in (baselines or {}).items():
        t0 = time.perf_counter()
        fits[name] = fit(tr, seed=cfg.seed)
        secs[name] = time.perf_counter() - t0
    for name, f in fits.items():
        a, b = scores(same.labels, f(same), c), scores(other.labels, f(other), c)
        out["models"][name] = {"same_generator": a, "other_generator": b, "drop_uf1": a["uf1"] - b["uf1"],
                               "train_seconds": round(secs[name], 1)}
    return out
