"""`mfvan-eval spot`: spotted intervals against annotations with the MEGC protocol.

A detection is a hit when its interval has IoU ≥ 0.5 with a ground-truth interval of the
same video (each ground truth matched at most once, best IoU first); precision, recall and F1
are pooled over all videos (MEGC2019–2022 spotting). Micro and macro are scored separately
and together, as the MEGC spotting challenges do.

The corpus is a CASME II-layout tree (`ROOT/subXX/CLIP/imgN.ext`) and an annotation table
(csv or xlsx) with columns subject, clip, onset, apex, offset and kind (micro|macro); frame
numbers are those in the file names, as in CASME II.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

Interval = tuple[int, int]


def iou(a: Interval, b: Interval) -> float:
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    return inter / ((a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter)


@dataclass
class Score:
    tp: int = 0
    n_pred: int = 0
    n_gt: int = 0

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_gt if self.n_gt else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict:
        return {"tp": self.tp, "n_pred": self.n_pred, "n_gt": self.n_gt, "precision": round(self.precision, 4),
                "recall": round(self.recall, 4), "f1": round(self.f1, 4)}


def match_pairs(gt: list[Interval], pred: list[Interval], threshold: float = 0.5) -> list[tuple[int, int]]:
    """(gt index, pred index) hits: one-to-one, greedy on IoU (highest first), IoU ≥ threshold."""
    pairs = sorted(((iou(g, p), i, j) for i, g in enumerate(gt) for j, p in enumerate(pred)), reverse=True)
    used_g, used_p, hits = set(), set(), []
    for v, i, j in pairs:
        if v < threshold:
            break
        if i in used_g or j in used_p:
            continue
        used_g.add(i)
        used_p.add(j)
        hits.append((i, j))
    return hits


def match(gt: list[Interval], pred: list[Interval], threshold: float = 0.5) -> int:
    """Hits: one-to-one, greedy on IoU (highest first), IoU ≥ threshold."""
    return len(match_pairs(gt, pred, threshold))


def score(gt: dict[str, list[Interval]], pred: dict[str, list[Interval]], threshold: float = 0.5) -> Score:
    s = Score()
    for video in set(gt) | set(pred):
        g, p = gt.get(video, []), pred.get(video, [])
        s.tp += match(g, p, threshold)
        s.n_gt += len(g)
        s.n_pred += len(p)
    return s


def read_annotations(path: Path) -> list[dict]:
    """Rows as dicts with lower-case keys (csv or xlsx)."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        ws = load_workbook(path, read_only=True, data_only=True).active
        rows = list(ws.iter_rows(values_only=True))
        head = [str(h).strip().lower() for h in rows[0]]
        return [dict(zip(head, r, strict=False)) for r in rows[1:] if any(v is not None for v in r)]
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k.strip().lower(): v for k, v in row.items()} for row in csv.DictReader(fh)]


def _subject_dir(root: Path, subject: object) -> Path:
    s = str(subject).strip()
    for cand in (s, f"sub{s}", f"sub{s.zfill(2)}", f"s{s}"):
        if (root / cand).is_dir():
            return root / cand
    return root / f"sub{s.zfill(2)}"


def ground_truth(rows: list[dict], root: Path) -> dict[str, list[tuple[Interval, str]]]:
    out: dict[str, list[tuple[Interval, str]]] = defaultdict(list)
    for r in rows:
        clip_key = next((k for k in ("clip", "filename", "episode", "video") if r.get(k) not in (None, "")), None)
        if clip_key is None:
            raise ValueError("annotation rows need a clip (or filename) column")
        folder = _subject_dir(root, r.get("subject", "")) / str(r[clip_key]).strip()
        kind = str(r.get("kind") or r.get("type") or "micro").strip().lower()
        kind = "macro" if kind.startswith("macro") else "micro"
        onset, offset = int(float(r["onset"])), int(float(r.get("offset") or r["onset"]))
        out[str(folder)].append(((onset, offset), kind))
    return out


_NUM = re.compile(r"(\d+)(?!.*\d)")


def clip_folders(root: Path) -> list[str]:
    """Every clip folder of a CASME II-layout corpus (root/subject/clip/ holding images).

    Why: a clip with no annotation row is an event-free video, not a clip to skip; under the
    MEGC protocol whatever the spotter finds there is a false positive (counted per minute).
    """
    from streamer.capture import IMAGE_SUFFIXES

    if not root.is_dir():
        return []
    return sorted(str(c) for sub in root.iterdir() if sub.is_dir() for c in sub.iterdir()
                  if c.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in c.iterdir()))


def frame_numbers(folder: Path) -> list[int]:
    from streamer.capture import FolderSource

    return [int(m.group(1)) if (m := _NUM.search(p.stem)) else i + 1
            for i, p in enumerate(FolderSource(folder, 1.0).paths)]


def main(argv: list[str] | None = None) -> int:
    from engine.config.cli import add_config_args, config_from_args
    from streamer.config import StreamdConfig

    p = argparse.ArgumentParser(prog="mfvan-eval spot", description="Score the spotter on an annotated corpus "
                                "(MEGC protocol: a hit is IoU >= 0.5; precision, recall, F1).")
    p.add_argument("--root", required=True, help="corpus root (CASME II layout: subXX/CLIP/imgN.ext)")
    p.add_argument("--annotations", required=True, help="csv/xlsx with subject, clip, onset, apex, offset, kind")
    p.add_argument("--fps", type=float, default=200.0, help="frame rate of the frame folders")
    p.add_argument("--limit", type=int, default=0, help="only the first N clips (0 = all)")
    p.add_argument("--threshold", choices=["online", "published"], help="override spotter.threshold")
    p.add_argument("--iou", type=float, default=0.5)
    p.add_argument("--out", help="write every clip's events and the scores here (JSON)")
    p.add_argument("--explain", action="store_true", help="for every missed event, what the spotter saw "
                   "(track state, floor, threshold, peaks, overlapping episodes) and a miss-cause table "
                   "(also in --out)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    add_config_args(p)
    args = p.parse_args(argv)
    cfg = config_from_args(args, StreamdConfig, {"spotter": {"threshold": args.threshold}} if args.threshold else None)
    root = Path(args.root)
    try:
        gt_all = ground_truth(read_annotations(Path(args.annotations)), root)
    except (OSError, ValueError, KeyError) as exc:
        print(f"mfvan-eval spot: {args.annotations}: {exc}", file=sys.stderr)
        return 2
    if args.explain and cfg.spotter.threshold != "online":
        print("mfvan-eval spot: --explain needs the online threshold", file=sys.stderr)
        return 2
    annotated = set(gt_all)
    clips = sorted(annotated | set(clip_folders(root)))  # event-free clips too: their detections are FPs
    if args.limit:
        clips = clips[: args.limit]
    missing = [c for c in clips if not Path(c).is_dir()]
    if missing:
        print(f"mfvan-eval spot: {len(missing)} annotated clip folder(s) missing, e.g. {missing[0]}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    from streamer.pipeline import make_detector
    from streamer.spot_cli import replay, spot_video
    from streamer.spotting.explain import cause_table

    detector = make_detector(cfg.faces)
    gt = {"micro": {}, "macro": {}, "all": {}}
    pred = {"micro": {}, "macro": {}, "all": {}}
    per_clip = {}
    misses: list[dict] = []
    free = {"clips": 0, "seconds": 0.0, "micro": 0, "macro": 0}  # event-free clips: all they yield is false
    for clip in tqdm(clips, desc="clips", unit="clip"):
        numbers = frame_numbers(Path(clip))
        if args.explain:
            events, pipe = replay(clip, cfg, args.fps, detector, False, Path(clip).name, explain=True)
            events.sort(key=lambda e: (e.onset, e.track))
            counters = pipe.counters()
        else:
            events, counters, _ = spot_video(clip, cfg, args.fps, detector=detector)
        ivs = [((numbers[e.onset], numbers[e.offset]), e.kind) for e in events]
        if clip not in annotated:
            free["clips"] += 1
            free["seconds"] += len(numbers) / args.fps
            for kind in ("micro", "macro"):
                free[kind] += sum(k == kind for _, k in ivs)
        per_clip[clip] = {"events": [e.to_json() for e in events], "counters": counters}
        if args.explain:
            clip_misses = explain_clip(gt_all.get(clip, []), ivs, numbers, pipe.spotters, args.iou)
            per_clip[clip]["misses"] = clip_misses
            misses += [{**m, "clip": clip} for m in clip_misses]
        for kind in ("micro", "macro"):
            gt[kind][clip] = [iv for iv, k in gt_all.get(clip, []) if k == kind]
            pred[kind][clip] = [iv for iv, k in ivs if k == kind]
        gt["all"][clip] = [iv for iv, _ in gt_all.get(clip, [])]
        pred["all"][clip] = [iv for iv, _ in ivs]
    scores = {kind: score(gt[kind], pred[kind], args.iou).as_dict() for kind in ("micro", "macro", "all")}
    minutes = free["seconds"] / 60.0
    free_report = {"clips": free["clips"], "seconds": round(free["seconds"], 2), "micro_fp": free["micro"],
                   "macro_fp": free["macro"],
                   "micro_fp_per_minute": round(free["micro"] / minutes, 2) if minutes else None}
    result = {"clips": len(clips), "threshold": cfg.spotter.threshold, "iou": args.iou, "scores": scores,
              "event_free": free_report}
    if args.explain:
        result["miss_causes"] = {kind: dict(cause_table([m for m in misses if m["kind"] == kind]))
                                 for kind in ("micro", "macro")}
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "per_clip": per_clip}, indent=1))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{len(clips)} clips ({free['clips']} event-free), threshold={cfg.spotter.threshold}, "
              f"hit = IoU >= {args.iou}")
        print(f"{'kind':<6} {'GT':>5} {'pred':>5} {'TP':>5} {'P':>6} {'R':>6} {'F1':>6}")
        for kind, s in scores.items():
            print(f"{kind:<6} {s['n_gt']:>5} {s['n_pred']:>5} {s['tp']:>5} {s['precision']:>6.3f} "
                  f"{s['recall']:>6.3f} {s['f1']:>6.3f}")
        if free["clips"]:
            print(f"event-free clips: {free['micro']} micro and {free['macro']} macro false positives in "
                  f"{free['seconds']:.1f} s ({free_report['micro_fp_per_minute']} micro per minute)")
        if args.explain:
            print_misses(misses, result["miss_causes"])
    return 0


def explain_clip(gt: list[tuple[Interval, str]], pred: list[tuple[Interval, str]], numbers: list[int],
                 spotters: dict, threshold: float) -> list[dict]:
    """Every ground-truth event of one clip that no detection of its kind hit, explained."""
    index = {n: i for i, n in enumerate(numbers)}

    def to_index(n: int) -> int:
        return index.get(n, min(max(n - numbers[0], 0), len(numbers) - 1))

    from streamer.spotting.explain import explain_miss

    out = []
    for kind in ("micro", "macro"):
        g = [iv for iv, k in gt if k == kind]
        hit = {i for i, _ in match_pairs(g, [iv for iv, k in pred if k == kind], threshold)}
        for i, iv in enumerate(g):
            if i in hit:
                continue
            ev = (to_index(iv[0]), to_index(iv[1]))
            others = [(to_index(o[0]), to_index(o[1])) for o, _ in gt if o != iv]
            info = explain_miss(ev, others, spotters, threshold)
            out.append({"kind": kind, "onset": iv[0], "offset": iv[1], **info})
    return out


def print_misses(misses: list[dict], causes: dict) -> None:
    print("\nmissed events (frame numbers of the corpus):")
    for m in misses:
        eps = "; ".join(f"{e['outcome']}{'/' + e['why'] if e['why'] else ''} {e['onset']}-{e['offset']} "
                        f"peak {e['peak']:.2f} IoU {e['iou']:.2f}" for e in m.get("episodes", []))
        print(f"  {Path(m['clip']).parent.name}/{Path(m['clip']).name} {m['kind']} {m['onset']}-{m['offset']}: "
              f"{m['cause']} | {m.get('track_state', '-')}, floor {m.get('floor')}, thr {m.get('threshold')}, "
              f"peak a {m.get('peak_a')}, peak r {m.get('peak_r')}" + (f" | {eps}" if eps else ""))
    for kind, table in causes.items():
        if table:
            print(f"\nmiss causes ({kind}):")
            for cause, n in table.items():
                print(f"  {cause:<20} {n:>4}")


if __name__ == "__main__":
    raise SystemExit(main())
