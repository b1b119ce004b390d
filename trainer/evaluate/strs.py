"""`mfvan-eval strs`: MEGC 2023's Spot-then-Recognise Score on `mfvan-analyze` output.

STRS (Liong, See, Chan et al. 2023) = spotting F1 × analysis F1, where the analysis F1 is
scored only on the spotted true positives: a missed or spurious interval costs the spotting
term, a wrong label on a found interval costs the analysis term.

Rules here (`--rules strict`, the default):
- per video, predictions and ground truths are matched one-to-one, greedily by IoU (highest
  first), IoU over inclusive frame ranges [onset, offset] >= 0.5 (`streamer.spotting.evaluate`,
  the MEGC spotting matcher the project already uses);
- TP = matches, FP = predictions left over, FN = ground truths left over, pooled over videos;
  predictions in a video with no ground-truth event (an event-free video) are FPs;
- analysis over the TP pairs: per class c, TP_c = pairs labelled c by both, FP_c = pairs the
  model calls c that are not, FN_c = pairs of class c the model calls something else;
  analysis F1 = 2·P̄·R̄ / (P̄ + R̄) with P̄, R̄ the class means of precision and recall (the
  published script's "F1-score analysis", which STRS multiplies); UF1 (mean per-class F1) and
  UAR (mean per-class recall) are reported beside it.

Where the published script (github.com/genbing99/STRS-Metric, `strs_metric.py`) differs, and
what `--rules published` reproduces:
1. Matching is many-to-many: every (prediction, ground truth) pair with IoU >= 0.5 is a TP,
   so one prediction covering two ground truths is two TPs, and two predictions on one ground
   truth are two TPs (strict: one TP, and one FN or one FP).
2. Videos are taken from the ground-truth table only: predictions in event-free videos are
   never counted (strict: FPs); subjects are taken from the prediction table only, so the
   events of a subject with no prediction at all are never FNs (strict: FNs).
3. Its class list is every label in either table, so a label only ever predicted (never
   annotated) is a class scoring 0 in the means (strict: the annotated classes).
4. Its "UAR analysis" is the mean per-class precision (strict: mean recall); its per-class
   counts come from sklearn's 2×2 confusion matrix, which fails when a class is absent from
   both the labels and the predictions of the TPs (strict: that class scores 0 and is kept
   only when it occurs in the label list).

    mfvan-eval strs --pred events.jsonl [more.jsonl ...] --annotations annotations.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamer.spotting.evaluate import iou, match_pairs, read_annotations


@dataclass(frozen=True)
class Interval:
    video: str  # the matching key: "subject/clip" (see video_key)
    onset: int  # 0-based frame positions, inclusive
    offset: int
    label: str = ""
    subject: str = ""


def _norm_subject(s: object) -> str:
    s = str(s).strip().lower()
    s = s[3:] if s.startswith("sub") else s
    return s.lstrip("0") or "0"


def video_key(subject: object, clip: object) -> str:
    """One key for a video in both tables: the subject without 'sub'/leading zeros, the clip
    name without extension ('sub01', 'sub1' and '1' are one subject)."""
    return f"{_norm_subject(subject)}/{Path(str(clip).strip()).stem}"


def key_of_path(path: str) -> tuple[str, str]:
    """(key, subject) of an analysed video: its folder is the clip, the folder above it the
    subject (the CASME II / mfvan-synth layout)."""
    p = Path(str(path).rstrip("/"))
    return video_key(p.parent.name, p.name), _norm_subject(p.parent.name)


def read_predictions(paths: Iterable[str], kind: str = "micro") -> list[Interval]:
    """mfvan-analyze rows (.jsonl or .csv) of the chosen kind."""
    out = []
    for path in paths:
        p = Path(path)
        if p.suffix.lower() == ".csv":
            with p.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        else:
            rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        for i, r in enumerate(rows):
            try:
                if kind != "all" and str(r.get("kind", "micro")) != kind:
                    continue
                key, subject = key_of_path(str(r["video"]))
                out.append(Interval(key, int(r["onset"]), int(r["offset"]), str(r.get("label") or ""), subject))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: row {i + 1} is not an mfvan-analyze row ({exc!r})") from None
    return out


def read_ground_truth(path: str, kind: str = "micro", first_frame: int = 1) -> list[Interval]:
    """Annotation rows (csv/xlsx: subject, clip, onset, offset, label[, kind]); frame numbers
    minus `first_frame` are the 0-based positions mfvan-analyze reports (CASME II and
    mfvan-synth number frames from img1)."""
    out = []
    for i, r in enumerate(read_annotations(Path(path))):
        try:
            k = str(r.get("kind") or "micro").strip().lower()
            k = "macro" if k.startswith("macro") else "micro"
            if kind != "all" and k != kind:
                continue
            clip = next(r[c] for c in ("clip", "filename", "video") if r.get(c) not in (None, ""))
            label = str(r.get("label") or r.get("emotion") or r.get("estimated emotion") or "").strip().lower()
            onset = int(float(r["onset"])) - first_frame
            offset = int(float(r.get("offset") or r["onset"])) - first_frame
            out.append(Interval(video_key(r.get("subject", ""), clip), onset, offset, label, _norm_subject(r.get("subject", ""))))
        except (KeyError, StopIteration, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: row {i + 2} lacks subject/clip/onset/offset ({exc!r})") from None
    return out


def _f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def strs(pred: Sequence[Interval], gt: Sequence[Interval], rules: str = "strict", threshold: float = 0.5,
         labels: Sequence[str] | None = None) -> dict:
    """The STRS report: spotting TP/FP/FN/P/R/F1, analysis over the TPs, STRS."""
    if rules not in ("strict", "published"):
        raise ValueError(f"rules {rules!r}: choose strict or published")
    by_pred: dict[str, list[Interval]] = defaultdict(list)
    by_gt: dict[str, list[Interval]] = defaultdict(list)
    for x in pred:
        by_pred[x.video].append(x)
    for x in gt:
        by_gt[x.video].append(x)
    pairs: list[tuple[Interval, Interval]] = []  # (gt, pred) spotting TPs
    tp = fp = fn = 0
    if rules == "strict":
        for video in sorted(set(by_pred) | set(by_gt)):
            g, p = by_gt.get(video, []), by_pred.get(video, [])
            hits = match_pairs([(x.onset, x.offset) for x in g], [(x.onset, x.offset) for x in p], threshold)
            pairs += [(g[i], p[j]) for i, j in hits]
            tp += len(hits)
            fp += len(p) - len(hits)
            fn += len(g) - len(hits)
    else:
        subjects = {x.subject for x in pred}
        for video in sorted(by_gt):
            g = by_gt[video]
            if g[0].subject not in subjects:
                continue  # the script walks the prediction table's subjects only
            matched: set[int] = set()
            for p in by_pred.get(video, []):
                hit = False
                for i, x in enumerate(g):
                    if iou((p.onset, p.offset), (x.onset, x.offset)) >= threshold:
                        pairs.append((x, p))
                        matched.add(i)
                        hit = True
                fp += not hit
            fn += len(g) - len(matched)
        tp = len(pairs)  # every pair is a TP under these rules
    sp, sr, sf = _f1(tp, fp, fn)
    if labels:
        names = list(labels)
    elif rules == "strict":  # the task's classes: those annotated
        names = sorted({x.label for x in gt} - {""})
    else:  # the script's: any label in either table, so a class only ever predicted scores 0 too
        names = sorted(({x.label for x in gt} | {x.label for x in pred}) - {""})
    per_class = []
    for c in names:
        ctp = sum(g.label == c and p.label == c for g, p in pairs)
        cfp = sum(p.label == c and g.label != c for g, p in pairs)
        cfn = sum(g.label == c and p.label != c for g, p in pairs)
        cp, cr, cf = _f1(ctp, cfp, cfn)
        per_class.append({"class": c, "tp": ctp, "fp": cfp, "fn": cfn, "precision": cp, "recall": cr, "f1": cf})
    mp = sum(r["precision"] for r in per_class) / len(per_class) if per_class else 0.0
    mr = sum(r["recall"] for r in per_class) / len(per_class) if per_class else 0.0
    af1 = 2 * mp * mr / (mp + mr) if mp + mr else 0.0
    uf1 = sum(r["f1"] for r in per_class) / len(per_class) if per_class else 0.0
    correct = sum(g.label == p.label for g, p in pairs)
    return {
        "rules": rules, "iou_threshold": threshold, "STRS": sf * af1,
        "spotting": {"tp": tp, "fp": fp, "fn": fn, "precision": sp, "recall": sr, "f1": sf},
        "analysis": {"pairs": len(pairs), "correct": correct, "precision": mp, "recall": mr, "f1": af1, "uf1": uf1,
                     "uar": mr if rules == "strict" else mp, "accuracy": correct / len(pairs) if pairs else 0.0,
                     "per_class": per_class},
        "videos": {"predicted": len(by_pred), "annotated": len(by_gt),
                   "event_free_with_predictions": len(set(by_pred) - set(by_gt))},
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mfvan-eval strs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pred", required=True, nargs="+", metavar="FILE", help="mfvan-analyze tables (.jsonl/.csv), one or more")
    p.add_argument("--annotations", required=True, metavar="FILE", help="csv/xlsx: subject, clip, onset, offset, label[, kind]")
    p.add_argument("--kind", default="micro", choices=["micro", "macro", "all"], help="which events count (default micro)")
    p.add_argument("--first-frame", type=int, default=1, help="the annotation's number of a video's first frame (default 1)")
    p.add_argument("--subjects", help="comma list: score only these subjects (e.g. the ones analysed)")
    p.add_argument("--rules", default="strict", choices=["strict", "published"],
                   help="strict (default: one-to-one, event-free videos count) or the published script's rules")
    p.add_argument("--iou", type=float, default=0.5, help="IoU threshold (default 0.5)")
    p.add_argument("--json", metavar="FILE", help="also write the full report here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    prog = "mfvan-eval strs"
    if not 0 < args.iou <= 1:
        print(f"{prog}: --iou must be in (0, 1]", file=sys.stderr)
        return 2
    try:
        pred = read_predictions(args.pred, args.kind)
        gt = read_ground_truth(args.annotations, args.kind, args.first_frame)
    except (OSError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if args.subjects:
        keep = {_norm_subject(s) for s in args.subjects.split(",") if s.strip()}
        pred = [x for x in pred if x.subject in keep]
        gt = [x for x in gt if x.subject in keep]
    if not gt:
        print(f"{prog}: no {args.kind} ground-truth events in {args.annotations}" + (" for --subjects" if args.subjects else ""),
              file=sys.stderr)
        return 2
    rep = strs(pred, gt, args.rules, args.iou)
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=1) + "\n", encoding="utf-8")
    s, a = rep["spotting"], rep["analysis"]
    print(f"STRS {rep['STRS']:.4f} ({args.rules} rules, IoU >= {args.iou:g}, {args.kind})\n"
          f"spotting: TP {s['tp']} FP {s['fp']} FN {s['fn']}  P {s['precision']:.4f} R {s['recall']:.4f} F1 {s['f1']:.4f}\n"
          f"analysis on {a['pairs']} spotted TPs: F1 {a['f1']:.4f} (P̄ {a['precision']:.4f}, R̄ {a['recall']:.4f})  "
          f"UF1 {a['uf1']:.4f}  UAR {a['uar']:.4f}  accuracy {a['accuracy']:.4f}\n"
          f"videos: {rep['videos']['predicted']} with predictions, {rep['videos']['annotated']} annotated, "
          f"{rep['videos']['event_free_with_predictions']} event-free with predictions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
