"""MFVAN losses (paper Eqs. 1-4, 9-11).

L_all = L_remove + focal(fused p) + sum_i focal(p_i, scale i) + L_mask            (Eq. 9)
L_remove = L_teacher + L_student (+ distillation, see below)                       (Eq. 4)

Distillation (the paper says the teacher is a "soft target" for the student without a formula):
we use BOTH an output term, MSE(student's onset estimate, teacher's onset estimate), and a
feature term, MSE(1x1-adapted student bottleneck, teacher bottleneck); the teacher side is
detached so the student follows the teacher, not the other way round. Weight: loss.distill_weight.

L_mask (Eq. 11) taken literally: each patch whose class-token attention f_c is >= theta costs
f_c, the others cost 0; summed over patches (= the attention mass kept), averaged over the
batch and the enabled scales, times loss.mask_weight. It pushes weak patches under theta so
the mask is sparse, while the classification terms keep the useful patches above it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from trainer.config.train import LossConfig


def class_alpha(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """alpha_t of Eq. 10 from class frequencies: N / (C * n_t), mean 1 over present classes.

    WHY inverse frequency: micro-expression sets are skewed (negative dominates, §4.5), and the
    paper's alpha is "the weight of the t-th class sample". An absent class gets 1 (unused).
    """
    counts = torch.bincount(torch.as_tensor(list(labels), dtype=torch.long), minlength=num_classes).float()
    present = counts > 0
    alpha = torch.ones(num_classes)
    alpha[present] = counts[present].sum() / (present.sum() * counts[present])
    return alpha


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor | None, gamma: float) -> torch.Tensor:
    """Eq. 10: -alpha_t (1 - p_t)^gamma log p_t, mean over the batch."""
    logp = F.log_softmax(logits, dim=-1).gather(1, target.view(-1, 1)).squeeze(1)
    pt = logp.exp()
    loss = -((1 - pt) ** gamma) * logp
    if alpha is not None:
        loss = alpha.to(logits.device)[target] * loss
    return loss.mean()


def mask_loss(fc: torch.Tensor, theta: float) -> torch.Tensor:
    """Eq. 11 for one scale: f_c where f_c >= theta else 0, summed over patches, batch mean."""
    return (fc * (fc >= theta).to(fc.dtype)).sum(dim=1).mean()


def pretrain_loss(out: dict[str, torch.Tensor], frames: torch.Tensor) -> torch.Tensor:
    """Eq. 1: the teacher reconstructs every frame."""
    return F.mse_loss(out["teacher_recon"], frames)


def remove_loss(out: dict[str, torch.Tensor], onset: torch.Tensor, distill_weight: float) -> dict[str, torch.Tensor]:
    """Eqs. 2-4 plus the distillation term; returns each part and their sum under "remove"."""
    parts = {
        "teacher": F.mse_loss(out["teacher_recon"], onset),
        "student": F.mse_loss(out["student_recon"], onset),
        "distill": F.mse_loss(out["student_recon"], out["teacher_recon"].detach())
        + F.mse_loss(out["student_feat"], out["teacher_feat"].detach()),
    }
    parts["remove"] = parts["teacher"] + parts["student"] + distill_weight * parts["distill"]
    return parts


def total_loss(
    out: dict[str, torch.Tensor],
    onset: torch.Tensor,
    target: torch.Tensor,
    cfg: LossConfig,
    alpha: torch.Tensor | None,
    theta: float,
    scales: Sequence[int],
    identity_removal: bool,
) -> dict[str, torch.Tensor]:
    """Eq. 9. Returns every term (for logging and tests) and their weighted sum under "all"."""
    parts: dict[str, torch.Tensor] = {"global": focal_loss(out["logits"], target, alpha, cfg.gamma)}
    total = parts["global"]
    if identity_removal and cfg.remove_weight > 0:
        parts.update(remove_loss(out, onset, cfg.distill_weight))
        total = total + cfg.remove_weight * parts["remove"]
    if "logits_global" in out:  # model.global_logits: the global branch's own focal loss, like a scale's
        parts["head_g"] = focal_loss(out["logits_global"], target, alpha, cfg.gamma)
        total = total + parts["head_g"]
    masks = []
    for i in scales:
        parts[f"scale{i}"] = focal_loss(out[f"logits_scale{i}"], target, alpha, cfg.gamma)
        total = total + parts[f"scale{i}"]
        masks.append(mask_loss(out[f"fc_scale{i}"], theta))
    if masks:
        parts["mask"] = torch.stack(masks).mean()
        total = total + cfg.mask_weight * parts["mask"]
    parts["all"] = total
    return parts
