"""Why a ground-truth event was missed: what the spotter saw around it (`mfvan-eval spot --explain`).

An event the spotter misses is lost for good, whatever the network does, so a miss must be
explainable from the spotter's own records, not guessed from the video: the per-frame trace
(state, a(t) or r(t), threshold, floor) and the decision taken on every episode
(`EpisodeDecision`) of every track. One cause per miss, the first that applies:

* ``no track``: no face track covered the event;
* ``broken:<reason>``: a continuity break (re-anchor, lost track, gap) inside the event, or an
  episode over it dropped as invalid for that reason;
* ``misplaced``: a micro detection overlaps it with IoU below the hit threshold;
* ``merged``: an accepted episode over it also covers another ground-truth event, or it lies
  inside a longer episode whose interval was placed elsewhere;
* ``macro:<why>``: the episode over it was classified macro (long, strong, held);
* ``weak``, ``too_short``, ``blink``, ``drift``, ``unfinished``: the episode over it was rejected so;
* ``warm-up``: the track had no floor yet (fewer than k frames or the floor still learning);
* ``refractory`` / ``returning``: a(t) crossed the threshold while those rules suppressed triggers;
* ``never triggered``: a(t) stayed below the threshold (its peak/threshold ratio is reported).
"""

from __future__ import annotations

import math
from collections import Counter

from streamer.spotting.spotter import (
    EPISODE,
    LEARNING,
    REFRACTORY,
    RETURNING,
    STATE_NAMES,
    WARMING,
    TrackSpotter,
)

Interval = tuple[int, int]


def _iou(a: Interval, b: Interval) -> float:
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    return inter / ((a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter)


def _overlaps(a: Interval, b: Interval) -> bool:
    return min(a[1], b[1]) >= max(a[0], b[0])


def explain_miss(event: Interval, others: list[Interval], spotters: dict[int, TrackSpotter],
                 iou_threshold: float = 0.5) -> dict:
    """One missed event (frame indices of the source, 0-based) → what was seen and the cause.

    `others` are the clip's other ground-truth intervals (to tell a merge from a long episode).
    """
    on, off = event
    best: dict | None = None
    for tid, sp in spotters.items():
        tr = [f for f in (sp.trace or []) if on - sp.k <= f[0] <= off + sp.k]
        inside = [f for f in tr if on <= f[0] <= off]
        if not inside:
            continue
        info = _explain_track(event, others, sp, tr, inside, iou_threshold)
        info["track"] = tid
        # the track that saw the event best: the episode closest to it, then the most frames
        rank = (max((e["iou"] for e in info["episodes"]), default=-1.0), len(inside))
        if best is None or rank > best["_rank"]:
            best = {**info, "_rank": rank}
    if best is None:
        return {"cause": "no track", "track": None}
    best.pop("_rank")
    return best


def _explain_track(event: Interval, others: list[Interval], sp: TrackSpotter, tr: list, inside: list,
                   iou_threshold: float) -> dict:
    on, off = event
    a_vals = [f[2] for f in tr if f[1] != EPISODE and not math.isnan(f[2])]
    r_vals = [f[2] for f in inside if f[1] == EPISODE]
    first = inside[0]
    states = Counter(STATE_NAMES[f[1]] for f in inside)
    info = {"floor": round(first[4], 4), "threshold": round(first[3], 4),
            "peak_a": round(max(a_vals), 4) if a_vals else None,
            "peak_r": round(max(r_vals), 4) if r_vals else None,
            "states": dict(states)}
    breaks = [(i, why) for i, why in sp.breaks if on - sp.k <= i <= off]
    info["track_state"] = "re-anchored/lost: " + ",".join(w for _, w in breaks) if breaks else "tracked"
    # episodes whose interval overlaps the event, or whose whole span (trigger to judgement)
    # contains it: an event inside a longer episode placed elsewhere was swallowed by it
    eps = [d for d in sp.decisions if _overlaps((d.onset, d.offset), event) or _overlaps((d.start, d.end), event)]
    info["episodes"] = [{**d.to_json(), "iou": round(_iou((d.onset, d.offset), event), 3)} for d in eps]
    cause = None
    for d in sorted(eps, key=lambda d: -_iou((d.onset, d.offset), event)):
        iv = (d.onset, d.offset)
        if d.outcome in ("micro", "macro") and (any(_overlaps(iv, o) for o in others)
                                                or not _overlaps(iv, event)):
            cause = "merged"
        elif d.outcome == "micro":
            cause = "misplaced" if _iou(iv, event) < iou_threshold else "matched elsewhere"
        elif d.outcome == "macro":
            cause = f"macro:{d.why}"
        elif d.outcome.startswith("invalid:"):
            cause = "broken:" + d.outcome.split(":", 1)[1]
        else:
            cause = d.outcome
        break
    if cause is None and breaks:
        cause = "broken:" + breaks[0][1]
    if cause is None:
        crossing = [f for f in tr if f[1] != EPISODE and not math.isnan(f[2]) and f[2] > f[3]]
        if any(f[1] == WARMING for f in inside) or any(f[1] == LEARNING for f in inside) and not crossing:
            cause = "warm-up"
        elif any(f[1] == REFRACTORY for f in crossing):
            cause = "refractory"
        elif any(f[1] == RETURNING for f in crossing):
            cause = "returning"
        elif any(f[1] == LEARNING for f in crossing):
            cause = "warm-up"
        else:
            cause = "never triggered"
            ratios = [f[2] / f[3] for f in inside if f[1] != EPISODE and not math.isnan(f[2]) and f[3] > 0]
            if ratios:  # at each frame's own threshold, within the event
                info["peak_over_threshold"] = round(max(ratios), 3)
    info["cause"] = cause
    return info


def cause_table(misses: list[dict]) -> list[tuple[str, int]]:
    """(cause, count), most frequent first."""
    return Counter(m["cause"] for m in misses).most_common()
