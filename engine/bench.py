"""`mfvan-bench engine`: latency p50/p99 and throughput per backend and precision, with torch
eager measured in the same run (DESIGN §8: CPU p50 ≤ 5 ms, p99 ≤ 10 ms at batch 1 on 2 threads;
ONNX Runtime ≥ 2× torch eager).

Why torch eager in the same run: on a shared machine absolute numbers drift with load; the
ratio of two measurements taken minutes apart does not. Timings cover `backend.infer` on
prepared float inputs (the model); the server's per-pair pre/post-processing (crop → NCHW,
heatmap upsampling) is measured separately and reported beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from engine.artefact import ArtefactError, load_artefact
from engine.backends import BACKENDS, BackendUnavailable, load_backend
from engine.config.cli import add_config_args, config_from_args
from engine.config.engine import BenchConfig
from engine.tensors import input_form, pair_inputs, upsample_heatmaps

TARGETS = {"cpu_p50_ms": 5.0, "cpu_p99_ms": 10.0, "ort_vs_torch_eager": 2.0}


def measure(infer, onset: np.ndarray, apex: np.ndarray, iters: int, warmup: int, desc: str) -> dict[str, float]:
    for _ in range(warmup):
        infer(onset, apex)
    times = np.empty(iters)
    for i in tqdm(range(iters), desc=desc, unit="it", file=sys.stderr, leave=False):
        t0 = time.perf_counter()
        infer(onset, apex)
        times[i] = time.perf_counter() - t0
    batch = onset.shape[0]
    return {
        "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 3),
        "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3),
        "mean_ms": round(float(times.mean()) * 1e3, 3),
        "pairs_per_s": round(batch * iters / float(times.sum()), 1),
        "iters": iters,
    }


def _candidates(cfg: BenchConfig, artefact) -> list[tuple[str, str, str]]:
    """(backend, precision, device) combinations worth trying for this artefact."""
    out = []
    for backend in cfg.backends:
        for precision in cfg.precisions:
            if backend == "onnxruntime":
                if precision == "int8" and not artefact.has("model.int8.onnx"):
                    continue
                out.append((backend, precision, "auto"))
            elif backend == "tensorrt":
                info = artefact.manifest.tensorrt
                if info is not None and info.precision == precision:
                    out.append((backend, precision, "auto"))
            elif backend == "torch":
                if precision in ("fp32", "fp16"):
                    out.append((backend, precision, "cuda"))  # the CPU torch figure is the eager baseline
            else:  # another registered backend: it says itself what it cannot run (then skipped)
                out.append((backend, precision, "auto"))
    return out


def run_bench(cfg: BenchConfig) -> dict[str, object]:
    artefact = load_artefact(cfg.engine)
    s = artefact.crop_size
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (2, cfg.batch, s, s, 3), dtype=np.uint8)
    onset, apex = pair_inputs(crops[0], crops[1], artefact.manifest)  # as the server feeds this artefact's model
    report: dict[str, object] = {
        "artefact": str(artefact.folder),
        "model": artefact.manifest.model_name,
        "model_sha256": artefact.manifest.model_sha256[:12],
        "batch": cfg.batch,
        "threads": cfg.threads,
        "host": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        },
        "results": {},
        "skipped": {},
    }
    results: dict[str, dict] = report["results"]  # type: ignore[assignment]
    skipped: dict[str, str] = report["skipped"]  # type: ignore[assignment]

    torch_eager = None
    try:
        tb = load_backend(artefact, "torch", "fp32", threads=cfg.threads, device="cpu")
        torch_eager = measure(tb.infer, onset, apex, cfg.torch_iters, min(cfg.warmup, 5), "torch eager cpu")
        torch_eager["device"] = "cpu"
        tb.close()
    except (BackendUnavailable, ArtefactError) as exc:
        skipped["torch-eager/fp32"] = str(exc)
    report["torch_eager"] = torch_eager

    for backend, precision, device in _candidates(cfg, artefact):
        key = f"{backend}/{precision}"
        try:
            b = load_backend(artefact, backend, precision, threads=cfg.threads, device=device)
        except (BackendUnavailable, ArtefactError) as exc:
            skipped[key] = str(exc)
            continue
        if backend == "torch":
            key = f"torch-{b.device}/{precision}" + ("+cudagraphs" if getattr(b, "use_graphs", False) else "")
        r = measure(b.infer, onset, apex, cfg.iters, cfg.warmup, key)
        r["device"] = str(b.device)
        if torch_eager:
            r["torch_eager_p50_ms"] = torch_eager["p50_ms"]
            r["speedup_vs_torch_eager"] = round(torch_eager["p50_ms"] / r["p50_ms"], 2)
        results[key] = r
        b.close()

    # the server's own per-pair work around the model, for the end-to-end budget
    one = crops[0][:1]
    heat = rng.random((4, artefact.manifest.output.heatmap_grid, artefact.manifest.output.heatmap_grid), dtype=np.float32)
    pre = measure(lambda a, b: pair_inputs(a, b, artefact.manifest), one, one, 200, 10, "pre")
    post = measure(lambda h, _b: upsample_heatmaps(h, s), heat, None, 200, 10, "post")  # type: ignore[arg-type]
    report["per_pair_overhead_ms"] = {"preprocess_p50": pre["p50_ms"], "heatmap_upsample_p50": post["p50_ms"],
                                      "preprocess": input_form(artefact.manifest)}

    ort_cpu = results.get("onnxruntime/fp32")
    if ort_cpu and ort_cpu["device"] == "CPUExecutionProvider" and cfg.batch == 1:
        report["targets"] = {
            "cpu_p50_ms": {"target": TARGETS["cpu_p50_ms"], "got": ort_cpu["p50_ms"], "met": ort_cpu["p50_ms"] <= TARGETS["cpu_p50_ms"]},
            "cpu_p99_ms": {"target": TARGETS["cpu_p99_ms"], "got": ort_cpu["p99_ms"], "met": ort_cpu["p99_ms"] <= TARGETS["cpu_p99_ms"]},
        }
        with_pre = round(ort_cpu["p50_ms"] + pre["p50_ms"], 3)  # the model plus its pre-processing (motion: the flow)
        report["targets"]["cpu_p50_with_preprocess_ms"] = {"target": TARGETS["cpu_p50_ms"], "got": with_pre,
                                                           "met": with_pre <= TARGETS["cpu_p50_ms"]}
        if "speedup_vs_torch_eager" in ort_cpu:
            sp = ort_cpu["speedup_vs_torch_eager"]
            report["targets"]["ort_vs_torch_eager"] = {"target": TARGETS["ort_vs_torch_eager"], "got": sp, "met": sp >= 2.0}
    report["host"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)  # type: ignore[index]
    return report


def _table(report: dict) -> str:
    lines = [f"{'backend/precision':<34} {'p50 ms':>8} {'p99 ms':>8} {'pairs/s':>9}  device"]
    rows = dict(report["results"])
    if report.get("torch_eager"):
        rows = {"torch-eager/fp32 (cpu)": report["torch_eager"], **rows}
    for k, r in rows.items():
        lines.append(f"{k:<34} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['pairs_per_s']:>9.1f}  {r.get('device', '')}")
    for k, why in report["skipped"].items():
        lines.append(f"{k:<34} skipped: {why}")
    for k, t in report.get("targets", {}).items():
        lines.append(f"target {k}: {t['got']} vs {t['target']} -> {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mfvan-bench engine", description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", metavar="DIR", help="artefact folder (default: the bundled demo artefact)")
    p.add_argument("--backend", action="append", dest="backends", choices=BACKENDS.plugins(),
                   help="measure only these (repeatable); default all available")
    p.add_argument("--precision", action="append", dest="precisions", choices=["fp32", "fp16", "int8"])
    p.add_argument("--batch", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--iters", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--torch-iters", type=int)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_config_args(p)
    args = p.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None and k in BenchConfig.model_fields}
    cfg = config_from_args(args, BenchConfig, overrides=overrides)
    os.environ.setdefault("OMP_NUM_THREADS", str(cfg.threads))
    try:
        report = run_bench(cfg)
    except ArtefactError as exc:
        print(f"mfvan-bench engine: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0
