"""Pair-level training data: (onset, apex) crops rendered directly, thousands of events a minute.

Why not clips: a transformer needs thousands of labelled events, and a 640x480 clip of a few
events costs seconds to render and minutes to crop through the daemon's tracker. Here each
event is rendered only where it matters: the registry identity's neutral frame is warped by
the event's AU-like field (`trainer.synth.warps`, the corpus' own fields) at the fraction of
its amplitude the daemon's spotter would see at the spotted onset and apex, the camera's
nuisances are applied to each frame, and the crops are cut with the daemon's crop geometry:
`streamer.crops.face_crop` (the one crop function) from the five landmarks the daemon's own
face detector finds on that identity, perturbed as tracking perturbs them.

Augmentation (each drawn per event from `PairOptions`, all seeded from (seed, identity, k)):
- amplitude at the apex 0.5-4 px (log-uniform; `amplitude_law` uniform for generator B);
- duration 150-500 ms at 200 fps with a rise share of 30-60 %; the spotted onset and apex are
  off the true ones by up to `onset_jitter`/`apex_jitter` frames, so the onset may already
  carry motion and the apex may be short of the peak (the curve of `PlannedEvent`);
- sensor noise sigma 0.5-4 grey levels, independently per frame;
- misalignment between onset and apex: each frame's five landmarks move by a small random
  similarity (0.25 px, 0.2 deg, 0.25 %), on top of one per-event landmark error (0.8 px/point);
- blur (Gaussian sigma 0-1.2, half of the events), gamma 0.7-1.4, JPEG quality 40-95 (half of
  the events), flicker: the apex frame's gain differs from the onset's by up to +-3 %.

Generators: "A" (the corpus' Gaussian handles) and "B" (the cross-generator check: compact
raised-cosine handles with jittered direction, weight and radius, uniform amplitude law), so a
model trained on A can be tested on B over held-out identities.

    python -m trainer.synth.pairs --out pairs48.npz --crop-size 48                # 31 x 165 events
    python -m trainer.synth.pairs --out pairsB.npz --generator B --first-subject 25 --subjects 7
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from calibration.pairs import PairSet
from trainer.synth.identities import SPECS, Identity
from trainer.synth.render import PlannedEvent
from trainer.synth.warps import (
    EXPRESSIONS,
    LABELS,
    _check_fold_free,
    _taper,
    expression_field,
    face_axes,
)


@dataclass(frozen=True)
class PairOptions:
    crop_size: int = 112
    events_per_identity: int = 165  # x 31 identities = 5115 events
    generator: str = "A"  # A: the corpus' Gaussian handles; B: compact, jittered handles
    amplitude_px: tuple[float, float] = (0.5, 4.0)
    amplitude_law: str = "loguniform"  # or "uniform"
    duration_ms: tuple[float, float] = (150.0, 500.0)
    rise_share: tuple[float, float] = (0.3, 0.6)
    fps: float = 200.0
    onset_jitter: int = 3  # frames the spotted onset may be late (motion already under way)
    apex_jitter: int = 4  # frames the spotted apex may be off the true apex
    noise_sigma: tuple[float, float] = (0.5, 4.0)
    misalign_px: float = 0.25
    misalign_deg: float = 0.2
    misalign_scale: float = 0.0025
    landmark_error_px: float = 0.8
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.2, 1.2)
    gamma: tuple[float, float] = (0.7, 1.4)
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (40, 95)
    flicker: float = 0.03
    mid_frames: int = 0  # frames rendered between onset and apex (teacher Eq. 1, LBP-TOP)


@dataclass
class Face:
    """What rendering needs of one identity: its neutral frame, 68 landmarks for the fields,
    the five landmarks the daemon's detector finds (the crop geometry) and the warp region."""

    name: str
    subject: str
    image: np.ndarray
    lm68: np.ndarray
    lm5: np.ndarray
    box: tuple[int, int, int, int]
    fields: dict[str, np.ndarray] = field(default_factory=dict)  # unit-amplitude fields, per label


def daemon_landmarks(image: np.ndarray) -> np.ndarray:
    """The five landmarks the daemon's configured face detector finds on this frame (the face
    nearest the centre), so the crops have the daemon's geometry, not a 68-point estimate."""
    from streamer.config import FacesConfig
    from streamer.pipeline import make_detector

    faces = make_detector(FacesConfig())(image)
    if not faces:
        raise ValueError("the daemon's detector finds no face on this identity")
    h, w = image.shape[:2]
    best = min(faces, key=lambda f: float(np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - (w / 2, h / 2))))
    return np.asarray(best.landmarks, np.float32)


def prepare(identities: Sequence[Identity], first_subject: int = 1) -> list[Face]:
    from streamer.faces.align import similarity_transform

    out = []
    for k, ident in enumerate(identities):
        lm5 = daemon_landmarks(ident.image)
        # work only where the crop looks (its source square, same for every crop size) plus
        # half an eye distance, so the field's edge taper never reaches what the crop shows
        inv = cv2.invertAffineTransform(similarity_transform(lm5, 112))
        corners = np.array([[0, 0], [112, 0], [0, 112], [112, 112]], np.float32) @ inv[:, :2].T + inv[:, 2]
        _, _, iod = face_axes(ident.landmarks)
        (bx0, by0), (bx1, by1) = corners.min(0) - 0.5 * iod, corners.max(0) + 0.5 * iod
        h, w = ident.image.shape[:2]
        box = (max(0, int(bx0)), max(0, int(by0)), min(w, int(np.ceil(bx1))), min(h, int(np.ceil(by1))))
        out.append(Face(ident.name, f"sub{first_subject + k:02d}", ident.image, ident.landmarks, lm5, box))
    return out


def compact_field(lm68: np.ndarray, label: str, amplitude: float, box: tuple[int, int, int, int],
                  rng: np.random.Generator) -> np.ndarray:
    """Generator B's basis: each handle a raised-cosine bump of compact support (radius 2.5 sigma)
    with its direction turned by up to 20 deg, weight x0.7-1.3 and radius x0.8-1.25."""
    ex, ey, iod = face_axes(lm68)
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    f = np.zeros((2, y1 - y0, x1 - x0), np.float32)
    for h in EXPRESSIONS[label]:
        c = lm68[list(h.points)].mean(0)
        a = np.deg2rad(rng.uniform(-20, 20))
        d = np.array(h.direction, np.float32)
        d = np.array([d[0] * np.cos(a) - d[1] * np.sin(a), d[0] * np.sin(a) + d[1] * np.cos(a)], np.float32)
        v = h.weight * rng.uniform(0.7, 1.3) * (d[0] * ex + d[1] * ey)
        radius = 2.5 * h.sigma * iod * rng.uniform(0.8, 1.25)
        r = np.sqrt((xs - c[0]) ** 2 + (ys - c[1]) ** 2) / radius
        bump = np.where(r < 1, 0.5 + 0.5 * np.cos(np.pi * np.clip(r, 0, 1)), 0.0).astype(np.float32)
        f[0] += v[0] * bump
        f[1] += v[1] * bump
    f *= _taper((y1 - y0, x1 - x0), 0.4 * iod)
    f *= amplitude / max(float(np.sqrt((f ** 2).sum(0)).max()), 1e-6)
    _check_fold_free(f)
    return f


def _jitter(lm5: np.ndarray, rng: np.random.Generator, px: float, deg: float, scale: float) -> np.ndarray:
    c = lm5.mean(0)
    m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), float(rng.normal(0, deg)), float(1 + rng.normal(0, scale)))
    m[:, 2] += rng.normal(0, px, 2)
    return (lm5 @ m[:, :2].T + m[:, 2]).astype(np.float32)


def _camera(img: np.ndarray, rng: np.random.Generator, gain: float, sigma: float, jpeg: int | None,
            lut: np.ndarray, blur: float) -> np.ndarray:
    out = cv2.LUT(img, lut)
    if blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    out = cv2.convertScaleAbs(out, alpha=gain)
    noise = np.empty(out.shape, np.float32)
    cv2.setRNGSeed(int(rng.integers(2**31)))  # cv2.randn: 5x numpy's normal, seeded from the event's stream
    cv2.randn(noise, 0.0, float(sigma))
    out = cv2.add(out.astype(np.float32), noise).clip(0, 255).astype(np.uint8)
    if jpeg is not None:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg)])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else out
    return out


def render_event(face: Face, label: str, rng: np.random.Generator, opts: PairOptions) -> tuple[list[np.ndarray], dict]:
    """Crops [onset, mid..., apex] of one event (BGR uint8, S x S) and its parameters."""
    from streamer.crops import face_crop

    lo, hi = opts.amplitude_px
    amp = float(np.exp(rng.uniform(np.log(lo), np.log(hi))) if opts.amplitude_law == "loguniform" else rng.uniform(lo, hi))
    dur = rng.uniform(*opts.duration_ms)
    n = max(4, round(dur * opts.fps / 1000))
    rise = max(2, round(n * rng.uniform(*opts.rise_share)))
    ev = PlannedEvent("micro", label, 0, rise, n, amp)
    t_on = int(rng.integers(0, opts.onset_jitter + 1))
    t_ap = int(np.clip(rise + rng.integers(-opts.apex_jitter, opts.apex_jitter + 1), t_on + 1, n - 1))
    times = [t_on, *np.linspace(t_on, t_ap, opts.mid_frames + 2)[1:-1].round().astype(int).tolist(), t_ap]
    fracs = [float(ev.curve(t)) for t in times]
    x0, y0, x1, y1 = face.box
    sub = face.image[y0:y1, x0:x1]
    if opts.generator == "B":
        disp = compact_field(face.lm68, label, amp, face.box, rng)
    else:  # the field is linear in its amplitude: one unit field per identity and label
        unit = face.fields.get(label)
        if unit is None:
            unit = face.fields[label] = expression_field(face.lm68, label, 1.0, face.box)
        disp = unit * np.float32(amp)
    ys, xs = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
    gamma = rng.uniform(*opts.gamma)
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma, 0, 255).astype(np.uint8)
    blur = rng.uniform(*opts.blur_sigma) if rng.random() < opts.blur_prob else 0.0
    jpeg = int(rng.integers(opts.jpeg_quality[0], opts.jpeg_quality[1] + 1)) if rng.random() < opts.jpeg_prob else None
    sigma = rng.uniform(*opts.noise_sigma)
    base_lm = face.lm5 - (x0, y0) + rng.normal(0, opts.landmark_error_px, face.lm5.shape).astype(np.float32)
    crops = []
    for k, frac in enumerate(fracs):
        img = sub if frac <= 1e-4 else cv2.remap(sub, xs - frac * disp[0], ys - frac * disp[1], cv2.INTER_LINEAR,
                                                  borderMode=cv2.BORDER_REPLICATE)
        gain = 1.0 if k == 0 else 1.0 + rng.uniform(-opts.flicker, opts.flicker) * k / (len(fracs) - 1)
        img = _camera(img, rng, gain, sigma, jpeg, lut, blur)
        lm = _jitter(base_lm, rng, opts.misalign_px, opts.misalign_deg, opts.misalign_scale) if k else base_lm
        crops.append(face_crop(img, lm, opts.crop_size))
    info = {"amplitude_px": round(amp, 3), "duration_ms": round(n * 1000 / opts.fps, 1), "apex_fraction": round(fracs[-1], 3),
            "onset_fraction": round(fracs[0], 3), "noise": round(sigma, 2), "blur": round(blur, 2), "gamma": round(gamma, 3),
            "jpeg": jpeg or 0}
    return crops, info


def render_identity(face: Face, index: int, seed: int, opts: PairOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """(crops (N, F, S, S, 3), labels (N,), subjects, infos) of one identity's events, balanced
    over the labels; seeded from (seed, identity index), so any worker count gives one set."""
    cv2.setNumThreads(1)
    rng = np.random.default_rng([seed, index, 7 if opts.generator == "B" else 0])
    labels = np.array([k % len(LABELS) for k in range(opts.events_per_identity)])
    rng.shuffle(labels)
    crops, infos = [], []
    for lab in labels:
        c, info = render_event(face, LABELS[int(lab)], rng, opts)
        crops.append(np.stack(c))
        infos.append(info)
    return np.stack(crops), labels, np.array([face.subject] * len(labels), object), infos


def make_pairs(identities: Sequence[Identity], opts: PairOptions, seed: int = 0, first_subject: int = 1,
               workers: int = 2, progress: bool = True) -> tuple[PairSet, list[dict]]:
    """Every identity's events as one PairSet (BGR wire crops), plus per-event parameters."""
    from tqdm import tqdm

    faces = prepare(identities, first_subject)
    results = [None] * len(faces)
    bar = tqdm(total=len(faces), desc="identities", unit="id", disable=not progress)
    if workers <= 1:
        for i, f in enumerate(faces):
            results[i] = render_identity(f, first_subject - 1 + i, seed, opts)
            bar.update()
    else:
        # spawn, not fork: the parent holds ONNX Runtime/OpenCV thread pools (the face
        # detector), and a forked child can inherit one of their locks held forever
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futs = {pool.submit(render_identity, f, first_subject - 1 + i, seed, opts): i for i, f in enumerate(faces)}
            for fut in futs:
                results[futs[fut]] = fut.result()
                bar.update()
    bar.close()
    crops = np.concatenate([r[0] for r in results])
    labels = np.concatenate([r[1] for r in results])
    subjects = np.concatenate([r[2] for r in results])
    infos = [dict(i, identity=faces[k].name) for k, r in enumerate(results) for i in r[3]]
    owner = np.repeat(np.arange(len(crops)), opts.mid_frames)
    mids = crops[:, 1:-1].reshape(-1, *crops.shape[2:]) if opts.mid_frames else np.zeros((0, *crops.shape[2:]), np.uint8)
    counter: dict[str, int] = {}
    clips = []
    for s in subjects:
        counter[s] = counter.get(s, 0) + 1
        clips.append(f"{s}/{opts.generator}{counter[s]:04d}")
    data = PairSet(onset=np.ascontiguousarray(crops[:, 0]), apex=np.ascontiguousarray(crops[:, -1]), labels=labels,
                   label_names=list(LABELS), subjects=subjects, clips=clips, frames=mids, frame_owner=owner)
    return data, infos


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.synth.pairs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="pairs .npz (mfvan-eval loso --pairs / mfvan-train --pairs)")
    p.add_argument("--crop-size", type=int, default=112)
    p.add_argument("--events-per-identity", type=int, default=PairOptions.events_per_identity)
    p.add_argument("--subjects", type=int, default=len(SPECS), help=f"identities (default all {len(SPECS)})")
    p.add_argument("--first-subject", type=int, default=1, help="first identity number (held-out sets: e.g. 25)")
    p.add_argument("--generator", choices=["A", "B"], default="A")
    p.add_argument("--mid-frames", type=int, default=0, help="frames between onset and apex (LBP-TOP, teacher)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    last = args.first_subject - 1 + args.subjects
    if args.first_subject < 1 or args.subjects < 1 or last > len(SPECS):
        print(f"pairs: identities {args.first_subject}..{last} outside 1..{len(SPECS)}", file=sys.stderr)
        return 2
    if args.crop_size % 8 or not 32 <= args.crop_size <= 512 or args.events_per_identity < 1 or args.mid_frames < 0:
        print("pairs: --crop-size a multiple of 8 in 32..512, --events-per-identity >= 1, --mid-frames >= 0", file=sys.stderr)
        return 2
    opts = replace(PairOptions(), crop_size=args.crop_size, events_per_identity=args.events_per_identity,
                   generator=args.generator, mid_frames=args.mid_frames,
                   amplitude_law="uniform" if args.generator == "B" else "loguniform")
    from trainer.evaluate.loso import save_pairs
    from trainer.media import MediaError
    from trainer.synth.identities import place

    t0 = time.perf_counter()
    try:
        identities = [place(s) for s in SPECS[args.first_subject - 1 : last]]
        data, infos = make_pairs(identities, opts, args.seed, args.first_subject, args.workers, not args.no_progress)
    except (MediaError, OSError, ValueError, RuntimeError) as exc:
        print(f"pairs: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_pairs(out, data)
    import json

    out.with_suffix(".json").write_text(json.dumps({"options": asdict(opts), "seed": args.seed, "events": len(data),
                                                    "subjects": data.subject_list(), "seconds": round(time.perf_counter() - t0, 1),
                                                    "per_event": infos}, indent=0) + "\n")
    print(f"{len(data)} events of {len(data.subject_list())} identities ({', '.join(f'{n} {int((data.labels == i).sum())}' for i, n in enumerate(data.label_names))}) "
          f"at {opts.crop_size} px, generator {opts.generator}, in {time.perf_counter() - t0:.0f} s -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
