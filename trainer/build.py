"""`mfvan-build-engine`: trainer checkpoint → verified engine artefact (DESIGN §4).

Steps: load the checkpoint through the trainer's registry → export ONNX (opset ≥ 17, dynamic
batch 1..B) and check it against torch → ORT-optimised copy (checked again) → slim copy of the
checkpoint (the torch backend and the benchmark's torch-eager column run it) → INT8 QDQ model
and its accuracy report when `--precision int8` → TensorRT plan when `--backend tensorrt` →
`manifest.json` with every file's sha256, written last and atomically, so a folder whose build
died half-way is never mistaken for a good artefact.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.artefact import (
    CALIB_REPORT,
    CHECKPOINT,
    MANIFEST,
    ONNX_FP32,
    ONNX_INT8,
    ONNX_OPT,
    TIMING_CACHE,
    ArtefactError,
    CalibrationInfo,
    FileEntry,
    InputSpec,
    Manifest,
    OutputSpec,
    file_entry,
    sha256_file,
    write_json_atomic,
    write_manifest,
)
from engine.backends import BACKENDS, BackendUnavailable
from engine.config.cli import add_config_args, config_from_args
from engine.process import setup_logging
from trainer.config.build import BuildConfig

log = logging.getLogger("mfvan.build")
# package data (pyproject.toml), so the default works from a wheel as from the source tree
DEMO_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "mfvan_demo.ckpt"


class BuildError(RuntimeError):
    """A build that cannot finish; the message says what to change."""


def _slim_checkpoint(src: Path, dst: Path) -> dict:
    """Copy the checkpoint without optimizer/resume state (weights, config, labels, provenance)."""
    import torch

    from trainer.checkpoint import load_checkpoint

    blob = load_checkpoint(src)
    slim = {k: v for k, v in blob.items() if k not in ("optimizer", "extra")}
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(slim, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a service user must be able to read it
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return blob


def build_artefact(cfg: BuildConfig, *, progress: bool = True) -> Manifest:
    """Run every build step for `cfg`; return the manifest written to `cfg.out`."""
    ckpt = Path(cfg.checkpoint) if cfg.checkpoint else DEMO_CHECKPOINT
    if not ckpt.is_file():
        if not cfg.checkpoint:
            raise BuildError(
                f"the bundled demo checkpoint {ckpt} does not exist yet (the model helper trains it); "
                "pass --checkpoint CKPT (a file written by mfvan-train)"
            )
        raise BuildError(f"checkpoint {ckpt} does not exist")
    if not cfg.out:
        raise BuildError("--out DIR is required (the artefact folder to write)")
    if cfg.backend == "onnxruntime" and cfg.precision == "fp16":
        raise BuildError("onnxruntime artefacts are fp32 or int8 (fp16 is a TensorRT/torch-CUDA precision)")
    if cfg.backend == "torch" and cfg.precision == "int8":
        raise BuildError("the torch backend serves fp32/fp16; build int8 for onnxruntime or tensorrt")
    if cfg.precision == "int8" and not cfg.calib:
        raise BuildError("--precision int8 needs --calib (calibration pairs: .npz, folder of .npz, or a corpus folder)")
    try:
        import trainer.checkpoint  # noqa: F401 - fail early, with the extra to install
        import trainer.models  # noqa: F401
    except ModuleNotFoundError as exc:
        raise BuildError(f"building needs the training extra ({exc.name} missing): pip install 'mfvan[train]'") from None

    final = Path(cfg.out)
    final.parent.mkdir(parents=True, exist_ok=True)
    created = not final.exists()
    # build in a sibling folder and move the files in only when everything succeeded: a build
    # that dies (disk full, bad export) leaves no half-written file where the artefact goes
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=final.parent))
    try:
        os.chmod(work, 0o755)
        manifest = _build_into(cfg, ckpt, work, progress)
        _publish(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if created and final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        raise
    return manifest


def _publish(work: Path, final: Path) -> None:
    """Move a finished build into `final`: the old manifest goes first, the new one last, so
    at no moment does `final` hold a manifest that disagrees with its files."""
    if not final.exists():
        os.replace(work, final)
        return
    (final / MANIFEST).unlink(missing_ok=True)
    for f in sorted(work.iterdir()):
        if f.name != MANIFEST:
            os.replace(f, final / f.name)
    os.replace(work / MANIFEST, final / MANIFEST)
    shutil.rmtree(work, ignore_errors=True)


def _build_into(cfg: BuildConfig, ckpt: Path, out: Path, progress: bool) -> Manifest:
    from trainer.checkpoint import CheckpointError, load_model
    from trainer.export import ExportError, check_against_torch, export_onnx, optimise_onnx
    from trainer.models import export_module

    steps = ["load", "export", "optimise", "checkpoint"]
    if cfg.precision == "int8":
        steps += ["calibrate", "report"]
    if cfg.backend == "tensorrt":
        steps.append("tensorrt")
    steps.append("manifest")
    bar = tqdm(total=len(steps), desc="build", unit="step", disable=not progress, file=sys.stderr)

    def step(name: str) -> None:
        bar.set_postfix_str(name)

    step("load")
    try:
        model, labels, mcfg = load_model(ckpt)
    except CheckpointError as exc:
        raise BuildError(str(exc)) from None
    module = export_module(model).eval()
    s = mcfg.crop_size
    bar.update()

    step("export")
    files: dict[str, FileEntry] = {}
    try:
        export_onnx(module, out / ONNX_FP32, s, cfg.opset)
        check_against_torch(module, out / ONNX_FP32, s, atol=cfg.atol)
        bar.update()
        step("optimise")
        optimise_onnx(out / ONNX_FP32, out / ONNX_OPT)
        check_against_torch(module, out / ONNX_OPT, s, atol=cfg.atol)
    except ExportError as exc:
        raise BuildError(str(exc)) from None
    files[ONNX_FP32] = file_entry(out / ONNX_FP32, "onnx", "fp32")
    files[ONNX_OPT] = file_entry(out / ONNX_OPT, "onnx-optimised", "fp32")
    bar.update()

    step("checkpoint")
    blob = _slim_checkpoint(ckpt, out / CHECKPOINT)
    files[CHECKPOINT] = file_entry(out / CHECKPOINT, "checkpoint", "fp32")
    bar.update()

    calibration = None
    if cfg.precision == "int8":
        calibration = _int8(cfg, out, s, labels, files, step, bar, mcfg.input_form)

    import onnx

    heat_shape = onnx.load(str(out / ONNX_FP32)).graph.output[1].type.tensor_type.shape.dim
    grid = int(heat_shape[2].dim_value) or mcfg.grid
    trt_info = None
    if cfg.backend == "tensorrt":
        step("tensorrt")
        from engine.backends.tensorrt import build_plan

        cache = Path(os.environ.get("MFVAN_CACHE", Path.home() / ".cache" / "mfvan")) / "trt" / TIMING_CACHE
        trt_info = build_plan(
            out / (ONNX_INT8 if cfg.precision == "int8" else ONNX_FP32),
            out,
            model_name=mcfg.name,
            precision=cfg.precision,
            max_batch=cfg.max_batch,
            crop_size=s,
            timing_cache=cache,
        )
        files[trt_info.plan] = file_entry(out / trt_info.plan, "tensorrt-plan", cfg.precision)
        if cache.is_file():
            (out / TIMING_CACHE).write_bytes(cache.read_bytes())
            files[TIMING_CACHE] = file_entry(out / TIMING_CACHE, "cache")
        bar.update()

    step("manifest")
    manifest = Manifest(
        model_name=mcfg.name,
        labels=tuple(labels),
        input=InputSpec(crop_size=s, max_batch=cfg.max_batch),
        output=OutputSpec(num_classes=len(labels), heatmap_grid=grid),
        opset=cfg.opset,
        backend=cfg.backend,
        precision=cfg.precision,
        model_sha256=files[ONNX_FP32].sha256,
        files=files,
        source={
            "checkpoint": str(ckpt),
            "checkpoint_sha256": sha256_file(ckpt),
            "git_rev": blob.get("git_rev", "unknown"),
            "stage": blob.get("stage", ""),
            "epoch": blob.get("epoch", 0),
            "model_config": mcfg.model_dump(mode="json"),
        },
        tensorrt=trt_info,
        calibration=calibration,
    )
    write_manifest(out, manifest)
    bar.update()
    bar.close()
    return manifest


def _corpus_clips(root: Path) -> list:
    """A CASME II-layout corpus folder (the synthetic corpus or a real dataset) -> its micro
    events as calibration clip pairs; calibration crops them with the streamer's crop path."""
    from calibration.pairs import CalibrationError, ClipPair
    from trainer.datasets import load_casme2
    from trainer.train.crops import CropError, frame_positions

    try:
        samples = [s for s in load_casme2(root) if s.kind == "micro"]
    except (FileNotFoundError, ValueError) as exc:
        raise CalibrationError(f"{root}: {exc}") from None
    events = []
    for s in samples:
        try:
            onset, apex = frame_positions(s.frame_paths, [s.onset, s.apex])
        except CropError:
            continue
        events.append(ClipPair(frames=tuple(s.frame_paths), onset=onset, apex=apex, label=s.label,
                               subject=str(s.subject), fps=s.fps, name=f"{s.subject}/{s.clip}@{s.apex}"))
    return events


def _int8(cfg: BuildConfig, out: Path, s: int, labels: list[str], files: dict, step, bar, form: str) -> CalibrationInfo:
    from calibration.pairs import CalibrationError, collect, split_held_out
    from calibration.quantize import quantize_qdq
    from calibration.report import compare

    step("calibrate")
    try:
        pairs = collect(cfg.calib, s, list(labels), cfg.calib_max_pairs, read_corpus=_corpus_clips)
        calib, held = split_held_out(pairs, cfg.held_out_fraction)
        if len(held) < cfg.min_held_out or len(calib) == 0:
            problem = (
                f"{len(pairs)} calibration pairs from {len(set(pairs.subjects))} subject(s) leave {len(held)} held-out "
                f"pairs (min_held_out={cfg.min_held_out}) to measure the INT8 accuracy change on"
            )
            if not cfg.force:
                raise BuildError(f"{problem}; give more pairs/subjects, or --force to ship INT8 unmeasured")
            log.warning("%s; --force: calibrating on all of them, shipping INT8 without a report", problem)
            calib, held = pairs, pairs.take(np.arange(0))
        qinfo = quantize_qdq(out / ONNX_OPT, out / ONNX_INT8, calib, method=cfg.calib_method, form=form)
    except CalibrationError as exc:
        raise BuildError(str(exc)) from None
    files[ONNX_INT8] = file_entry(out / ONNX_INT8, "onnx-qdq", "int8")
    bar.update()

    step("report")
    report_name: str | None = None
    if len(held):
        report = compare(out / ONNX_OPT, out / ONNX_INT8, held, form=form)
        report.update(qinfo, calibration_pairs=len(calib), calibration_subjects=sorted(set(calib.subjects)))
        write_json_atomic(out / CALIB_REPORT, report)
        files[CALIB_REPORT] = file_entry(out / CALIB_REPORT, "report")
        report_name = CALIB_REPORT
        tqdm.write(
            f"INT8 vs FP32 on {len(held)} held-out pairs: label agreement {report['label_agreement']:.3f}"
            + (f", accuracy {report['accuracy_fp32']:.3f} → {report['accuracy_int8']:.3f}" if report["labelled"] else ""),
            file=sys.stderr,
        )
    bar.update()
    return CalibrationInfo(
        hash=pairs.digest(), method=cfg.calib_method, pairs=len(calib), held_out=len(held), report=report_name
    )


def _disk_hint(out: Path) -> str:
    """Exporters report a full disk as a corrupt file; say what the disk looks like."""
    folder = out if out.exists() else out.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    if free < 64 << 20:
        return f"; the disk holding {folder} has {free >> 20} MiB free: no space left on device?"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="mfvan-build-engine",
        description="Build an engine artefact (ONNX + optional INT8 QDQ / TensorRT plan + manifest.json) from a checkpoint.",
    )
    p.add_argument("--checkpoint", help="trainer checkpoint (default: the bundled demo checkpoint)")
    p.add_argument("--backend", choices=BACKENDS.plugins())
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"])
    p.add_argument("--calib", metavar="PAIRS", help="calibration pairs for int8: .npz, folder of .npz, or a corpus folder")
    p.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--calib-max-pairs", type=int)
    p.add_argument("--max-batch", type=int)
    p.add_argument("--opset", type=int)
    p.add_argument("--out", metavar="DIR", help="artefact folder to write")
    p.add_argument("--force", action="store_true", default=None, help="finish int8 without an accuracy report")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show the traceback of an unexpected failure")
    add_config_args(p)
    args = p.parse_args(argv)
    overrides = {
        k: v
        for k, v in vars(args).items()
        if v is not None and k in BuildConfig.model_fields
    }
    cfg = config_from_args(args, BuildConfig, overrides=overrides)
    setup_logging("INFO")
    try:
        manifest = build_artefact(cfg, progress=not args.quiet)
    except (BuildError, ArtefactError, BackendUnavailable) as exc:
        print(f"mfvan-build-engine: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - any other failure: one clear line, traceback on --debug
        if args.debug:
            raise
        print(f"mfvan-build-engine: build failed, nothing written to {cfg.out}: {type(exc).__name__}: {str(exc)[:400]}"
              f"{_disk_hint(Path(cfg.out))} (--debug shows the traceback)", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{n} {e.bytes / 1e6:.2f} MB" for n, e in manifest.files.items())
    print(f"built {cfg.out}: {manifest.model_name} {manifest.backend}/{manifest.precision}, sha256 {manifest.model_sha256[:12]}; {sizes}")
    return 0
