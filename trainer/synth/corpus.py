"""Plan and write a synthetic corpus in the CASME II layout.

Layout: `OUT/subXX/EPyy_01/imgN.png` (N from 1), `OUT/annotations.csv` (subject, clip, onset,
apex, offset, label, kind, ... ; frame numbers are the N of imgN), the same rows in
`OUT/CASME2-coding-synth.xlsx` under CASME II's own column names (so the CASME II loader's
xlsx path is exercised), `OUT/ground_truth.jsonl` (one line per clip: every event including
blinks, head moves, identity) and `OUT/manifest.json` (command, seed, counts, timing).

Each clip is planned in the parent process from its own seed ([seed, subject, clip]), so the
corpus is identical whatever the number of workers or the order they finish in.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from trainer.synth.identities import Identity, load_identities
from trainer.synth.render import Distractors, PlannedEvent, Renderer
from trainer.synth.warps import LABELS

# Huffman-only deflate with the SUB filter: lossless, ~2x faster than zlib level 1 on noisy
# 640x480 frames here (8.7 ms vs 19 ms) for ~5 % more bytes.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
              cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]


@dataclass(frozen=True)
class PlanOptions:
    fps: float = 200.0
    micro_per_clip: int = 5
    micro_ms: tuple[float, float] = (65.0, 500.0)
    micro_px: tuple[float, float] = (1.0, 4.0)
    macro_prob: float = 0.2  # chance a clip holds one macro-expression
    macro_ms: tuple[float, float] = (800.0, 3000.0)
    macro_px: tuple[float, float] = (6.0, 16.0)
    blinks_per_clip: int = 1
    gap_ms: tuple[float, float] = (150.0, 300.0)  # neutral time between events
    lead_ms: float = 100.0
    head_moves_per_clip: int = 1
    noise_sigma: tuple[float, float] = (1.0, 3.0)
    drift_px: tuple[float, float] = (1.5, 5.0)
    rotation_deg: tuple[float, float] = (0.3, 1.5)
    flicker: tuple[float, float] = (0.004, 0.02)
    flicker_hz: tuple[float, float] = (0.3, 3.0)
    # Why: a corpus of clips that all hold events cannot say how often the spotter fires on a
    # face that does nothing; drawn only when > 0, so the default corpus stays bit-identical
    empty_clip_prob: float = 0.0


@dataclass(frozen=True)
class ClipPlan:
    subject: str  # sub01 ...
    clip: str  # EP01_01 ...
    identity_index: int
    seed: int
    n_frames: int
    events: tuple[PlannedEvent, ...]
    distractors: Distractors


def _frames(ms: float, fps: float) -> int:
    return int(round(ms * fps / 1000.0))


def plan_clip(subject_index: int, clip_index: int, seed: int, opts: PlanOptions) -> ClipPlan:
    rng = np.random.default_rng([seed, subject_index, clip_index])
    fps = opts.fps
    items: list[tuple[str, str]] = []
    labels = np.concatenate([rng.permutation(LABELS) for _ in range(opts.micro_per_clip // 3 + 1)])
    items += [("micro", str(lab)) for lab in labels[: opts.micro_per_clip]]
    if rng.random() < opts.macro_prob:
        items.append(("macro", str(rng.choice(LABELS))))
    if opts.empty_clip_prob > 0 and rng.random() < opts.empty_clip_prob:
        # an event-free clip of about the same length: neutral rests where the events would be
        items = [("rest", "")] * len(items)
    items += [("blink", "")] * opts.blinks_per_clip
    order = rng.permutation(len(items))
    t = _frames(opts.lead_ms, fps)
    events = []
    for i in order:
        kind, label = items[i]
        if kind == "rest":
            t += _frames(rng.uniform(*opts.micro_ms), fps) + _frames(rng.uniform(*opts.gap_ms), fps)
            continue
        if kind == "blink":
            dur, amp = _frames(rng.uniform(100, 200), fps), 0.0
            apex = t + int(dur * rng.uniform(0.4, 0.5))
        else:
            lo, hi = opts.micro_ms if kind == "micro" else opts.macro_ms
            dur = max(_frames(rng.uniform(lo, hi), fps), 2)
            amp = float(rng.uniform(*(opts.micro_px if kind == "micro" else opts.macro_px)))
            apex = t + max(1, int(round(dur * rng.uniform(0.3, 0.5))))
        events.append(PlannedEvent(kind, label, t, apex, t + dur, round(amp, 3)))
        t += dur + _frames(rng.uniform(*opts.gap_ms), fps)
    n_frames = t + _frames(opts.lead_ms, fps) - _frames(opts.gap_ms[0], fps) // 2
    moves = []
    for _ in range(opts.head_moves_per_clip):
        length = _frames(rng.uniform(150, 400), fps)
        start = int(rng.integers(0, max(1, n_frames - length)))
        moves.append((start, length, float(rng.uniform(-6, 6)), float(rng.uniform(-4, 4))))
    d = Distractors(drift_px=float(rng.uniform(*opts.drift_px)), rotation_deg=float(rng.uniform(*opts.rotation_deg)),
                    head_moves=tuple(moves), noise_sigma=float(rng.uniform(*opts.noise_sigma)),
                    flicker=float(rng.uniform(*opts.flicker)), flicker_hz=float(rng.uniform(*opts.flicker_hz)))
    return ClipPlan(f"sub{subject_index + 1:02d}", f"EP{clip_index + 1:02d}_01", subject_index,
                    int(rng.integers(0, 2**31)), n_frames, tuple(events), d)


def plan_corpus(subjects: int, clips_per_subject: int, seed: int, opts: PlanOptions,
                first_subject: int = 1) -> list[ClipPlan]:
    """Subjects first_subject .. first_subject + subjects - 1 (1-based identity numbers)."""
    first = first_subject - 1
    return [plan_clip(s, c, seed, opts) for s in range(first, first + subjects) for c in range(clips_per_subject)]


def write_clip(plan: ClipPlan, identity: Identity, out: Path, fps: float) -> tuple[str, int]:
    """Render one clip into `out/subject/clip/` (written to a temp folder, then renamed)."""
    cv2.setNumThreads(1)
    final = out / plan.subject / plan.clip
    tmp = out / plan.subject / f".{plan.clip}.part"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    r = Renderer(identity, plan.events, plan.n_frames, plan.seed, fps, plan.distractors)
    for t, frame in enumerate(r.frames()):
        if not cv2.imwrite(str(tmp / f"img{t + 1}.png"), frame, PNG_PARAMS):
            raise OSError(f"cannot write {tmp / f'img{t + 1}.png'}")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return f"{plan.subject}/{plan.clip}", plan.n_frames


ANNOTATION_COLUMNS = ["subject", "clip", "onset", "apex", "offset", "label", "kind", "identity",
                      "amplitude_px", "duration_ms", "fps"]
CASME2_COLUMNS = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
                  "Estimated Emotion", "Kind"]
AUS = {"positive": "6+12", "negative": "4+10", "surprise": "1+2+5+26"}


def annotation_rows(plans: list[ClipPlan], identities: list[Identity], fps: float) -> list[dict]:
    """Micro and macro events (blinks are distractors: only in ground_truth.jsonl)."""
    rows = []
    for p in plans:
        for e in sorted(p.events, key=lambda e: e.onset):
            if e.kind == "blink":
                continue
            rows.append({"subject": p.subject, "clip": p.clip, "onset": e.onset + 1, "apex": e.apex + 1,
                         "offset": e.offset + 1, "label": e.label, "kind": e.kind,
                         "identity": identities[p.identity_index].name, "amplitude_px": e.amplitude_px,
                         "duration_ms": round((e.offset - e.onset) * 1000 / fps, 1), "fps": fps})
    return rows


def write_annotations(out: Path, rows: list[dict]) -> None:
    from openpyxl import Workbook

    with open(out / "annotations.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ANNOTATION_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(CASME2_COLUMNS)
    for r in rows:
        ws.append([r["subject"][3:], r["clip"], r["onset"], r["apex"], r["offset"], AUS[r["label"]],
                   r["label"], r["kind"]])
    wb.save(out / "CASME2-coding-synth.xlsx")


def write_ground_truth(out: Path, plans: list[ClipPlan], identities: list[Identity], fps: float) -> None:
    with open(out / "ground_truth.jsonl", "w") as fh:
        for p in plans:
            ident = identities[p.identity_index]
            fh.write(json.dumps({
                "subject": p.subject, "clip": p.clip, "identity": ident.name, "source": ident.source,
                "low_res": ident.low_res, "fps": fps, "n_frames": p.n_frames, "frame_numbering": "imgN, N from 1",
                "events": [{**asdict(e), "onset": e.onset + 1, "apex": e.apex + 1, "offset": e.offset + 1}
                           for e in p.events],
                "distractors": asdict(p.distractors),
                "landmarks68": np.round(ident.landmarks, 2).tolist(),
            }) + "\n")


def _cpu_seconds() -> float:
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def make_corpus(out: Path, subjects: int, clips_per_subject: int, seed: int, opts: PlanOptions,
                workers: int = 2, face_px: float = 220.0, progress: bool = True, first_subject: int = 1) -> dict:
    from tqdm import tqdm

    t0 = time.perf_counter()
    identities = load_identities(first_subject - 1 + subjects, face_px)  # indexed by identity number - 1
    plans = plan_corpus(subjects, clips_per_subject, seed, opts, first_subject)
    out.mkdir(parents=True, exist_ok=True)
    total = sum(p.n_frames for p in plans)
    bar = tqdm(total=total, unit="frame", desc="mfvan-synth", disable=not progress)
    if workers <= 1:
        for p in plans:
            bar.update(write_clip(p, identities[p.identity_index], out, opts.fps)[1])
    else:
        # spawn, not fork: the parent already runs ONNX Runtime and OpenCV thread pools, and a
        # forked child can inherit one of their locks held (it hung here).
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(write_clip, p, identities[p.identity_index], out, opts.fps) for p in plans]
            for fut in as_completed(futures):
                bar.update(fut.result()[1])
    bar.close()
    rows = annotation_rows(plans, identities, opts.fps)
    write_annotations(out, rows)
    write_ground_truth(out, plans, identities, opts.fps)
    summary = {
        "subjects": subjects, "first_subject": first_subject,
        "identities": sorted({identities[p.identity_index].name for p in plans}),
        "clips": len(plans), "frames": total,
        "micro": sum(r["kind"] == "micro" for r in rows), "macro": sum(r["kind"] == "macro" for r in rows),
        "blinks": sum(e.kind == "blink" for p in plans for e in p.events),
        "labels": {lab: sum(r["label"] == lab and r["kind"] == "micro" for r in rows) for lab in LABELS},
        "fps": opts.fps, "seed": seed, "options": asdict(opts), "seconds": round(time.perf_counter() - t0, 1),
        # CPU seconds of this process and its finished workers: wall time depends on what else
        # runs on the machine, this does much less (idle-machine estimate: cpu_seconds / workers)
        "cpu_seconds": round(_cpu_seconds(), 1),
    }
    (out / "manifest.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
