"""The three training stages, each resumable from its own checkpoint.

Stage checkpoints `<out>/<stage>.ckpt` are written atomically after every epoch with the
optimiser state; a rerun skips finished stages and continues a partial one at the next
epoch. Every epoch reseeds from (seed, stage, epoch), so a resumed run draws the same
shuffles and dropout masks as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.config.train import StageConfig, TrainConfig
from trainer.losses import class_alpha, pretrain_loss, remove_loss, total_loss
from trainer.models import MFVAN, create_model, export_module, network_inputs
from trainer.train.data import PairSet, to_tensor
from trainer.train.distributed import Dist

STAGES = ("pretrain", "remove", "joint")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch sees no CUDA device (CPU-only torch or no driver)")
    return torch.device(name)


def _stage_params(model: MFVAN, stage: str) -> list[nn.Parameter]:
    if stage == "pretrain":
        return list(model.teacher.parameters())
    if stage == "remove":
        return list(model.teacher.parameters()) + list(model.student.parameters())
    return list(model.parameters())


def _flip_mask(n: int, gen: torch.Generator) -> torch.Tensor:
    """Which pairs of a batch get the same random horizontal flip of both frames (faces are
    near-symmetric): [n, 1, 1, 1] bool, one draw from `gen` per batch."""
    return (torch.rand(n, generator=gen) < 0.5).view(-1, 1, 1, 1)


def lr_factor(scfg: StageConfig, step: int, steps_per_epoch: int) -> float:
    """The stage's learning-rate multiplier at optimiser step `step` (0-based): linear warm-up
    from 1/100 over `warmup_epochs`, then constant or cosine down to 1/100 at the last step.
    A pure function of the step, so a resumed stage continues on the same curve."""
    total = max(1, scfg.epochs * steps_per_epoch)
    warm = int(round(scfg.warmup_epochs * steps_per_epoch))
    if step < warm:
        return 0.01 + 0.99 * step / warm
    if scfg.schedule == "constant":
        return 1.0
    t = min(1.0, (step - warm) / max(1, total - warm - 1))
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t))


def pose_jittered(onset: np.ndarray, apex: np.ndarray, jitter: list[float], rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One random similarity per pair (`data.pose_jitter`: rotation degrees, scale fraction,
    shift pixels, each drawn uniformly in +-), the same for its onset and apex, so the motion
    between them is the event's own and only the face's pose and place in the crop change."""
    deg, scale, px = jitter
    n, s = onset.shape[0], onset.shape[1]
    out_on, out_ap = np.empty_like(onset), np.empty_like(apex)
    centre = ((s - 1) / 2.0, (s - 1) / 2.0)
    for i in range(n):
        m = cv2.getRotationMatrix2D(centre, float(rng.uniform(-deg, deg)), float(1.0 + rng.uniform(-scale, scale)))
        m[:, 2] += rng.uniform(-px, px, size=2)
        out_on[i] = cv2.warpAffine(onset[i], m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out_ap[i] = cv2.warpAffine(apex[i], m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out_on, out_ap


def motion_cache(data: PairSet, flip: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The motion input (engine.motion) of every training pair, as is and horizontally flipped:
    exactly what `motion_of` computes from the (flipped) batch tensors, once per stage instead of
    once per batch and epoch (the flow is deterministic)."""
    from engine.motion import motion_nchw

    plain = torch.from_numpy(motion_nchw(data.onset, data.apex))
    if not flip:
        return plain, None
    return plain, torch.from_numpy(motion_nchw(data.onset[:, :, ::-1], data.apex[:, :, ::-1]))


def _run_stage(
    stage: str,
    model: MFVAN,
    ddp_model: nn.Module,
    data: PairSet,
    cfg: TrainConfig,
    scfg: StageConfig,
    device: torch.device,
    d: Dist,
    out_dir: Path | None,
    resume: bool,
    progress: bool,
    on_epoch: Callable[[str, int, dict[str, float]], None] | None,
) -> None:
    ckpt = out_dir / f"{stage}.ckpt" if out_dir else None
    params = _stage_params(model, stage)
    opt = torch.optim.AdamW(params, lr=scfg.lr, weight_decay=scfg.weight_decay)
    # the weights' moving average: a flatter, better-generalising point than the last step's weights
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(scfg.ema), use_buffers=True) if scfg.ema > 0 else None
    start = 0
    if resume and ckpt is not None and ckpt.exists():
        blob = load_checkpoint(ckpt)
        model.load_state_dict(blob["state_dict"])
        start = int(blob["epoch"])
        if start < scfg.epochs and "optimizer" in blob:
            opt.load_state_dict(blob["optimizer"])
        if start < scfg.epochs and ema is not None and "ema" in blob.get("extra", {}):
            ema.load_state_dict(blob["extra"]["ema"])
    if start >= scfg.epochs:
        return
    stage_idx = STAGES.index(stage)
    alpha = class_alpha(data.labels, cfg.model.num_classes) if cfg.loss.alpha == "inverse_frequency" else None
    frames = data.pretrain_frames() if stage == "pretrain" else None
    n = len(frames) if frames is not None else len(data)
    if n == 0:
        raise ValueError(f"stage {stage}: no training data")
    bs = scfg.batch_size
    per_rank = (n - n % d.world) // d.world
    spe = max(1, math.ceil(per_rank / bs) - (1 if per_rank > bs and per_rank % bs == 1 else 0))  # batches per epoch, as below
    jitter = stage != "pretrain" and any(v > 0 for v in cfg.data.pose_jitter)
    cached = motion_cache(data, cfg.data.flip) if stage == "joint" and model.motion and not jitter else None
    step = start * spe
    for epoch in range(start, scfg.epochs):
        pairs = data
        if jitter:  # this epoch's poses; the motion is recomputed from the very pixels trained on
            rng = np.random.default_rng([cfg.seed, stage_idx, epoch])
            onset_j, apex_j = pose_jittered(data.onset, data.apex, cfg.data.pose_jitter, rng)
            pairs = replace(data, onset=onset_j, apex=apex_j)
            if stage == "joint" and model.motion:
                cached = motion_cache(pairs, cfg.data.flip)
        torch.manual_seed(cfg.seed * 1_000_003 + stage_idx * 10_007 + epoch)
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + stage_idx * 101 + epoch)
        order = torch.randperm(n, generator=gen).numpy()
        # every rank gets the same number of samples (hence batches): DDP hangs otherwise
        order = order[: len(order) - len(order) % d.world][d.rank :: d.world]
        model.train()
        sums: dict[str, float] = {}
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        if len(batches) > 1 and len(batches[-1]) < 2:  # BatchNorm cannot train on one sample
            batches = batches[:-1]
        bar = tqdm(batches, desc=f"{stage} {epoch + 1}/{scfg.epochs}", leave=False, disable=not (progress and d.main))
        for idx in bar:
            idx = np.sort(idx)
            if stage == "pretrain":
                x = to_tensor(frames[idx], device)
                out = ddp_model(x, x, stage="pretrain")
                parts = {"pretrain": pretrain_loss(out, x)}
                loss = parts["pretrain"]
            else:
                onset, apex = to_tensor(pairs.onset[idx], device), to_tensor(pairs.apex[idx], device)
                motion = None
                if cfg.data.flip:
                    m = _flip_mask(len(idx), gen).to(device)
                    onset, apex = torch.where(m, onset.flip(3), onset), torch.where(m, apex.flip(3), apex)
                    if cached is not None and cached[1] is not None:
                        motion = torch.where(m, cached[1][idx].to(device), cached[0][idx].to(device))
                elif cached is not None:
                    motion = cached[0][idx].to(device)
                if stage == "remove":
                    out = ddp_model(onset, apex, stage="remove")
                    parts = remove_loss(out, onset, cfg.loss.distill_weight)
                    loss = parts["remove"]
                else:
                    y = torch.from_numpy(data.labels[idx]).to(device)
                    out = ddp_model(onset, apex, with_teacher=cfg.model.identity_removal, stage="joint", motion=motion)
                    parts = total_loss(
                        out, onset, y, cfg.loss, alpha, cfg.model.theta, model.scales, cfg.model.identity_removal
                    )
                    loss = parts["all"]
            for group in opt.param_groups:
                group["lr"] = scfg.lr * lr_factor(scfg, step, spe)
            step += 1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(idx)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        means = {k: v / max(1, sum(len(b) for b in batches)) for k, v in sums.items()}
        extra: dict[str, Any] = {"losses": means}
        if ema is not None:
            if epoch + 1 == scfg.epochs:  # the stage ends: its result is the average
                model.load_state_dict(ema.module.state_dict())
            else:  # a resumed stage continues the same average
                extra["ema"] = ema.state_dict()
        if on_epoch is not None:
            on_epoch(stage, epoch + 1, means)
        if ckpt is not None and d.main:
            save_checkpoint(
                ckpt,
                model,
                cfg.model,
                data.label_names,
                train_config=cfg.model_dump(mode="json"),
                stage=stage,
                epoch=epoch + 1,
                optimizer=opt.state_dict(),
                extra=extra,
            )


def train(
    cfg: TrainConfig,
    data: PairSet,
    *,
    out_dir: str | Path | None = None,
    device: torch.device | None = None,
    stages: Sequence[str] = STAGES,
    resume: bool = True,
    progress: bool = True,
    model: MFVAN | None = None,
    dist_info: Dist | None = None,
    on_epoch: Callable[[str, int, dict[str, float]], None] | None = None,
    joint_epochs: int | None = None,
) -> MFVAN:
    """Run `stages` in order; without identity removal the first two are skipped (nothing to
    learn for them). Returns the model (unwrapped, on `device`)."""
    device = device or resolve_device(cfg.device)
    d = dist_info or Dist()
    if len(data.label_names) != cfg.model.num_classes:
        raise ValueError(f"{len(data.label_names)} labels but model.num_classes = {cfg.model.num_classes}")
    if data.crop_size != cfg.model.crop_size:
        raise ValueError(f"crops are {data.crop_size}px but model.crop_size = {cfg.model.crop_size}")
    torch.manual_seed(cfg.seed)
    model = model or create_model(cfg.model)
    model.to(device)
    ddp_model: nn.Module = model
    if d.active:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[d.local_rank] if device.type == "cuda" else None, find_unused_parameters=True
        )
    out = Path(out_dir) if out_dir else None
    for stage in stages:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        if stage != "joint" and not cfg.model.identity_removal:
            continue
        scfg: StageConfig = getattr(cfg, stage)
        if stage == "joint" and joint_epochs is not None:
            scfg = scfg.model_copy(update={"epochs": joint_epochs})
        _run_stage(stage, model, ddp_model, data, cfg, scfg, device, d, out, resume, progress, on_epoch)
    return model.eval()


@torch.no_grad()
def predict(
    model: MFVAN, data: PairSet, device: torch.device | None = None, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities [N, C] and heatmaps [N, 4, g, g] through the export contract."""
    device = device or next(model.parameters()).device
    module = export_module(model).to(device)
    probs, heats = [], []
    for i in range(0, len(data), batch_size):
        # the engine's own pre-processing (engine.tensors.pair_inputs): motion-form models get the flow
        p, h = module(*network_inputs(model.cfg, data.onset[i : i + batch_size], data.apex[i : i + batch_size], device))
        probs.append(p.cpu().numpy())
        heats.append(h.cpu().numpy())
    c, g = model.cfg.num_classes, model.cfg.grid
    if not probs:
        return np.zeros((0, c), np.float32), np.zeros((0, 4, g, g), np.float32)
    return np.concatenate(probs), np.concatenate(heats)


def summary(model: nn.Module) -> dict[str, Any]:
    n = sum(p.numel() for p in model.parameters())
    return {"params": n, "size_mb_fp32": n * 4 / 2**20}
