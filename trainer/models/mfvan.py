"""MFVAN (Pan et al. 2023, §3): identity removal + multi-scale local attention + fusion.

Data flow for one (onset, apex) pair of RGB crops in [0, 1]:
- identity removal (§3.1): the student maps apex -> onset. Its reconstruction x'' is the
  identity image in the paper's apex-only form; in the `onset_apex` form the real onset is the
  identity image (it is available live), and scales 2-3 become f(apex) - f(onset), i.e. the
  identity is removed at feature level too. change = apex - identity is the de-identified
  "global change" image; with `identity_removal` off, change = apex (Table 3's "Global").
- global head: a small CNN on the change image -> one D-dim feature.
- scales (§3.2): 1 = the apex image (plus the change image in `onset_apex` form), 2 and 3 =
  the student's stride-4 and stride-8 feature maps; each is a g x g patch grid fed to its own
  transformer. f_c = class-token attention to each patch; patches with f_c < theta are masked
  out and the rest are averaged with the class token into one vector per scale.
- `motion` form (beyond the paper; HTNet/OFF-ApexNet's inputs): the first network input is
  the onset -> apex motion (u, v, optical strain; `engine.motion.pair_motion`, OpenCV DIS, the
  one function the engine also applies), the magnitude sqrt(u^2 + v^2) is computed in the
  graph. Scale 1 sees [u, v, magnitude, strain, apex]; the global head sees the motion beside
  the change image. Identity removal stays the student's: the identity image is its apex ->
  onset reconstruction x'' (the real onset is not a network input in this form) and scales
  2-3 are f(apex) - f(x''), the student's de-identified features. Training feeds real onset
  crops and the model computes the motion from them with the same function, on the very
  (flipped) pixels it trains on.
- fusion (Eq. 7): the global vector and the per-scale vectors are averaged (`model.fusion:
  concat`: concatenated) and go through the fusion MLP -> class logits. Each scale also has its own linear head (per-scale focal loss).

WHY the global vector joins Eq. 7's average: the paper's Figure 2 fuses global and local
features, and Table 3's "Global" row (no scales) must still classify.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.config.train import ModelConfig
from trainer.models.attention import ScaleTransformer
from trainer.models.parts import GlobalHead, StudentAE, TeacherAE
from trainer.models.registry import register_model

HEATMAP_CHANNELS = ("fused", "scale1", "scale2", "scale3")
# the motion tensor's fixed scales: crop pixels of flow, unitless strain -> ~unit range
FLOW_SCALE, STRAIN_SCALE = 0.5, 5.0


def to_wire(x: torch.Tensor) -> np.ndarray:
    """RGB [0, 1] NCHW network input -> the BGR uint8 NHWC wire crops it came from (exact for
    crops_to_nchw's output, so the motion seen in training is the motion the engine computes)."""
    return np.ascontiguousarray((x.detach().float().cpu() * 255.0).round().clamp(0, 255).to(torch.uint8)
                                .permute(0, 2, 3, 1).flip(-1).numpy())


def motion_of(onset: torch.Tensor, apex: torch.Tensor) -> torch.Tensor:
    """The engine's motion pre-processing (engine.motion) on a training batch."""
    from engine.motion import motion_nchw

    return torch.from_numpy(motion_nchw(to_wire(onset), to_wire(apex))).to(apex.device, apex.dtype)


def network_inputs(cfg: ModelConfig, onset: np.ndarray, apex: np.ndarray, device: torch.device | str = "cpu"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Wire crop batches -> the two inputs of the exported network, exactly as the engine
    makes them (`engine.tensors.pair_inputs`)."""
    from engine.tensors import pair_inputs

    x0, x1 = pair_inputs(onset, apex, cfg.input_form)
    return torch.from_numpy(x0).to(device), torch.from_numpy(x1).to(device)


def with_motion(mfeat: torch.Tensor | None, image: torch.Tensor, appearance: bool) -> torch.Tensor:
    """A branch's input: the image alone (no motion form), the motion beside it, or the motion
    alone (`model.appearance: false`)."""
    if mfeat is None:
        return image
    return torch.cat([mfeat, image], dim=1) if appearance else mfeat


class MFVAN(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        student_widths: tuple[int, int, int] = (16, 32, 64),
        teacher_widths: tuple[int, int, int] = (32, 64, 128),
        teacher_blocks: int = 2,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        s, g, d = cfg.crop_size, cfg.grid, cfg.embed_dim
        bad = sorted(set(cfg.scales) - {1, 2, 3})
        if bad:
            raise ValueError(f"model.scales: {bad} are not scales; choose from 1, 2, 3")
        if not cfg.scales and not cfg.use_global:
            raise ValueError("model: need use_global or at least one scale, else nothing classifies")
        if s % 8:
            raise ValueError(f"model.crop_size {s} must be a multiple of 8 (the student has stride 8)")
        self.scales = tuple(sorted(set(cfg.scales)))
        self.two_inputs = cfg.input_form == "onset_apex" and cfg.identity_removal
        self.motion = cfg.input_form == "motion"
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1), persistent=False)

        self.teacher = TeacherAE(teacher_widths, teacher_blocks)
        self.student = StudentAE(student_widths, teacher_widths[2])
        if not cfg.appearance and not self.motion:
            raise ValueError("model.appearance: false needs input_form: motion (else nothing but appearance is left)")
        m = 4 if self.motion else 0  # u, v, magnitude, strain
        a = 3 if cfg.appearance else 0  # the change image (global head) / the apex image (scale 1)
        self.global_head = (GlobalHead(a + m, d, student_widths, cfg.global_pool, s, cfg.global_strides, cfg.global_dropout)
                            if cfg.use_global else None)
        c1_in = (6 if self.two_inputs else a) + m
        sizes = {1: (c1_in, s), 2: (student_widths[1], s // 4), 3: (student_widths[2], s // 8)}
        # model.stem applies to scale 1 only (the full-resolution input: flow/apex pixels)
        self.transformers = nn.ModuleDict(
            {str(i): ScaleTransformer(sizes[i][0], sizes[i][1], g, d, cfg.depth, cfg.heads, cfg.stem if i == 1 else "patch")
             for i in self.scales}
        )
        self.scale_heads = nn.ModuleDict({str(i): nn.Linear(d, cfg.num_classes) for i in self.scales})
        n_vec = len(self.scales) + (1 if cfg.use_global else 0)
        df = d * n_vec if cfg.fusion == "concat" else d
        self.fuse = nn.Sequential(nn.LayerNorm(df), nn.Linear(df, d), nn.GELU(), nn.Dropout(0.1), nn.Linear(d, cfg.num_classes))
        # created last and only when on, so configs without it build (and initialise) exactly as before
        self.global_logits = nn.Linear(d, cfg.num_classes) if cfg.global_logits and cfg.use_global else None
        self.scale_proj = (nn.ModuleDict({str(i): nn.Linear((g * g + 1) * d, d) for i in self.scales})
                           if cfg.scale_pool == "flatten" else None)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def motion_features(self, motion: torch.Tensor) -> torch.Tensor:
        """(u, v, strain) -> [u, v, magnitude, strain], each scaled to ~unit range."""
        uv = motion[:, :2] * FLOW_SCALE
        mag = torch.sqrt((uv * uv).sum(dim=1, keepdim=True) + 1e-6)
        return torch.cat([uv, mag, motion[:, 2:3] * STRAIN_SCALE], dim=1)

    def forward(
        self, onset: torch.Tensor | None, apex: torch.Tensor, with_teacher: bool = False, stage: str = "joint",
        motion: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Training-side forward. Returns logits, per-scale logits/f_c, student reconstruction
        (and the teacher's outputs when `with_teacher`, for L_remove).

        `stage` picks the sub-network a training stage needs, so one `forward` serves every
        stage (DDP only synchronises gradients of what runs through the wrapped forward):
        "pretrain" = teacher reconstructs `apex` (any frame, Eq. 1); "remove" = teacher and
        student map apex -> onset (Eqs. 2-4); "joint" = everything (Eq. 9).
        Motion form: `motion` is the (u, v, strain) input; when None it is computed from the
        onset crops with the engine's function (training), so `onset` may be None only then.
        """
        cfg = self.cfg
        out: dict[str, torch.Tensor] = {}
        if stage == "pretrain":
            out["teacher_recon"], out["teacher_feat"] = self.teacher(self.norm(apex))
            return out
        recon, f2, f3 = self.student(self.norm(apex))
        out["student_recon"] = recon
        out["student_feat"] = self.student.adapter(f3)
        if with_teacher or stage == "remove":
            out["teacher_recon"], out["teacher_feat"] = self.teacher(self.norm(apex))
        if stage == "remove":
            return out
        mfeat = None
        if self.motion:
            if motion is None:
                if onset is None:
                    raise ValueError("motion form: give the motion input or the onset crops")
                motion = motion_of(onset, apex)
            mfeat = self.motion_features(motion)
        if cfg.identity_removal:
            if self.motion:
                identity = recon
                f2o, f3o = self.student.encode(self.norm(recon))
                f2, f3 = f2 - f2o, f3 - f3o
            elif self.two_inputs:
                identity = onset
                f2o, f3o = self.student.encode(self.norm(onset))
                f2, f3 = f2 - f2o, f3 - f3o
            else:
                identity = recon
            change = (apex - identity) * 4.0  # micro-movements are small: rescale to ~unit range
        else:
            change = self.norm(apex)
        vectors: list[torch.Tensor] = []
        if self.global_head is not None:
            vectors.append(self.global_head(with_motion(mfeat, change, cfg.appearance)))
            if self.global_logits is not None:
                out["logits_global"] = self.global_logits(vectors[0])
        s1 = torch.cat([self.norm(apex), change], dim=1) if self.two_inputs else self.norm(apex)
        scale_in = {
            1: with_motion(mfeat, s1, cfg.appearance),
            2: f2,
            3: f3,
        }
        for i in self.scales:
            tokens, fc = self.transformers[str(i)](scale_in[i])
            keep = (fc >= cfg.theta).to(tokens.dtype).unsqueeze(-1)  # mask patches under theta
            if self.scale_proj is None:
                z = (tokens[:, 0] + (keep * tokens[:, 1:]).sum(dim=1)) / (1.0 + keep.sum(dim=1))
            else:  # scale_pool flatten: masked patches are zeros in place, the rest keep their grid position
                z = self.scale_proj[str(i)](torch.cat([tokens[:, :1], keep * tokens[:, 1:]], dim=1).flatten(1))
            vectors.append(z)
            out[f"logits_scale{i}"] = self.scale_heads[str(i)](z)
            out[f"fc_scale{i}"] = fc
        fused_in = torch.cat(vectors, dim=1) if cfg.fusion == "concat" else torch.stack(vectors, dim=0).mean(dim=0)
        out["logits"] = self.fuse(fused_in)
        return out

    def heatmaps(self, out: dict[str, torch.Tensor], ref: torch.Tensor) -> torch.Tensor:
        """[B, 4, g, g] in [0, 1]: fused, scale1..3 (each map divided by its max; a disabled
        scale gives zeros)."""
        g = self.cfg.grid
        zero = torch.zeros_like(ref[:, 0, :g, :g])
        maps = {}
        for i in (1, 2, 3):
            fc = out.get(f"fc_scale{i}")
            if fc is None:
                maps[i] = zero
            else:
                maps[i] = (fc / (fc.amax(dim=1, keepdim=True) + 1e-6)).reshape(-1, g, g)
        if self.scales:
            fused = torch.stack([maps[i] for i in self.scales], dim=1).mean(dim=1)
            fused = fused / (fused.flatten(1).amax(dim=1).view(-1, 1, 1) + 1e-6)
        else:
            fused = zero
        return torch.stack([fused, maps[1], maps[2], maps[3]], dim=1)


class ExportModule(nn.Module):
    """The inference contract: forward(onset, apex) -> (probs [B,C], heatmaps [B,4,g,g])."""

    def __init__(self, model: MFVAN) -> None:
        super().__init__()
        self.model = model

    def forward(self, onset: torch.Tensor, apex: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Motion form: the first input is the engine's motion tensor, not the onset crop."""
        out = self.model(None, apex, motion=onset) if self.model.motion else self.model(onset, apex)
        probs = F.softmax(out["logits"], dim=-1)
        heat = self.model.heatmaps(out, apex)
        if not self.model.two_inputs and not self.model.motion:
            # apex-only form: keep "onset" a graph input (ONNX drops unused ones) so every
            # artefact has the same two inputs and the engine needs no per-form special case
            heat = heat + 0.0 * onset[:, :1, :1, :1]
        return probs, heat


def identity_removal_reaches_logits(cfg: ModelConfig) -> bool:
    """Whether the student's de-identified output can change a prediction. Scales 2-3 are its
    features; the change image (global head, and scale 1 in `onset_apex` form) is apex minus its
    reconstruction. Only the motion form with `appearance: false` and no scale 2-3 feeds the
    classifier motion alone: identity removal then trains the teacher and student, which touch
    no logit, so the network predicts exactly as without it (Table 3's "+RI" rows of such a
    model are the rows without; bitwise so on 26 folds, results_synth/pairs_fusion)."""
    if not cfg.identity_removal:
        return False
    return cfg.input_form != "motion" or cfg.appearance or bool({2, 3} & set(cfg.scales))


def export_module(model: nn.Module) -> nn.Module:
    """Wrap a trained MFVAN for inference/ONNX export (eval mode; the teacher is not used)."""
    if isinstance(model, ExportModule):
        return model.eval()
    if not isinstance(model, MFVAN):
        raise TypeError(f"export_module expects an MFVAN, got {type(model).__name__}")
    return ExportModule(model).eval()


@register_model("mfvan_tiny")
def mfvan_tiny(cfg: ModelConfig) -> MFVAN:
    """Sized for the CPU target (ONNX Runtime, 2 threads, batch 1: p50 <= 5 ms)."""
    return MFVAN(cfg, student_widths=(16, 32, 64), teacher_widths=(32, 64, 128), teacher_blocks=2)


@register_model("mfvan_lite")
def mfvan_lite(cfg: ModelConfig) -> MFVAN:
    """A light teacher (1 residual block per stage, half width) for CPU-bound LOSO sweeps:
    the teacher is ~3/4 of mfvan_tiny's training FLOPs and never runs at inference."""
    return MFVAN(cfg, student_widths=(16, 32, 64), teacher_widths=(16, 32, 64), teacher_blocks=1)


@register_model("mfvan_base")
def mfvan_base(cfg: ModelConfig) -> MFVAN:
    """Wider CNNs for GPU serving; transformer size still comes from cfg."""
    return MFVAN(cfg, student_widths=(32, 64, 128), teacher_widths=(64, 128, 256), teacher_blocks=3)
