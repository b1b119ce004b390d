"""Schema of `mfvan-train` / `mfvan-eval loso`: model, data, stages and evaluation.

Torch-free on purpose: engine hosts validate train configs (e.g. inside checkpoints) without
the `[train]` extra. The trainer owns the meaning of these fields (trainer/models/).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.config.base import Section


class ModelConfig(Section):
    name: str = Field("mfvan_tiny", description="a name in trainer's model registry")
    input_form: Literal["apex", "onset_apex", "motion"] = Field(
        "onset_apex",
        description="apex: the paper's; onset_apex: onset as the identity image; motion: scale 1 and the global head "
        "see onset->apex optical flow u, v, magnitude and strain (engine.motion) with the apex",
    )
    crop_size: int = Field(112, ge=32, le=512)
    num_classes: int = Field(3, ge=2)
    identity_removal: bool = True
    scales: list[int] = Field(default_factory=lambda: [1, 2, 3], description="which of the 3 scales are on")
    use_global: bool = True
    embed_dim: int = Field(64, ge=8)
    depth: int = Field(2, ge=1, description="L, transformer blocks per scale")
    heads: int = Field(4, ge=1)
    grid: int = Field(7, ge=2, description="s: each scale is split into s x s patches")
    theta: float = Field(0.02, ge=0, lt=1, description="patches with class-token attention < theta are masked")
    stem: Literal["patch", "conv"] = Field(
        "patch",
        description="scale 1's patch embedding: patch = one strided conv per patch (the paper's Eq. 6); conv = a small "
        "hierarchical conv stem (3x3 stride-2 convs, then the remaining patch), HTNet-style, to keep fine flow structure",
    )
    global_pool: Literal["gap", "flatten"] = Field(
        "gap",
        description="the global head's pooling: gap = global average pooling (the paper's); flatten = keep location "
        "(flatten its last feature map, OFF-ApexNet-style), so where on the face the motion is reaches the classifier",
    )
    scale_pool: Literal["mean", "flatten"] = Field(
        "mean",
        description="each scale's readout: mean = the class token averaged with the kept patches (the paper's); flatten = "
        "the class token and the kept (theta-masked) patch tokens concatenated in grid order and projected, so location survives",
    )
    global_logits: bool = Field(
        False,
        description="give the global vector its own linear head and focal loss (like each scale's), so the global "
        "branch is trained directly, not only through the fused average",
    )
    global_strides: int = Field(
        4, ge=1, le=4,
        description="stride-2 convs in the global head's four (the rest stride 1): fewer keep a finer last map for "
        "global_pool: flatten (3 -> 6 x 6 at 48 px)",
    )
    global_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the global head's pooled/flattened map")
    appearance: bool = Field(
        True,
        description="motion form only: the global head and scale 1 also see the change and apex images (the issue's "
        "'motion with the apex image'); false = motion alone there, so no face appearance (identity) reaches them",
    )
    fusion: Literal["mean", "concat"] = Field(
        "mean",
        description="Eq. 7's fusion input: mean = the global and per-scale vectors averaged (the paper's); concat = "
        "concatenated, so the fusion MLP weighs each branch itself (a branch that carries no signal is not averaged in)",
    )


class LossConfig(Section):
    gamma: float = Field(2.0, ge=0, description="focal loss gamma (r in Eq. 10)")
    alpha: Literal["inverse_frequency", "none"] = "inverse_frequency"
    mask_weight: float = Field(0.1, ge=0)
    remove_weight: float = Field(1.0, ge=0)
    distill_weight: float = Field(
        0.5, ge=0, description="teacher -> student distillation (output + bottleneck feature MSE) inside L_remove"
    )


class StageConfig(Section):
    epochs: int = Field(10, ge=0)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(32, ge=1)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["constant", "cosine"] = Field("constant", description="learning rate over the stage's steps")
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up from lr/100 over this many epochs (both schedules)")
    ema: float = Field(0.0, ge=0, lt=1, description="decay per optimiser step of an exponential moving average of the "
                       "weights (and BatchNorm statistics) that replaces them at the stage's end; 0 = off")


class DataConfig(Section):
    dataset: Literal["casme2", "samm", "smic", "megc2019", "synth"] = "synth"
    root: str = ""
    annotations: str = ""
    cache_dir: str = ".cache/mfvan/crops"
    labels: list[str] = Field(default_factory=lambda: ["negative", "positive", "surprise"])
    kind: Literal["micro", "macro", "all"] = Field("micro", description="which annotated events to train/evaluate on")
    pretrain_frames: int = Field(4, ge=0, description="frames between onset and apex per event: for the teacher (Eq. 1) and LBP-TOP")
    flip: bool = Field(True, description="random horizontal flip of the (onset, apex) pair while training")
    pose_jitter: list[float] = Field(
        default_factory=lambda: [0.0, 0.0, 0.0], min_length=3, max_length=3,
        description="[degrees, scale fraction, pixels]: each epoch, every training pair gets one random similarity "
        "(rotation, scale, shift up to these) applied to both of its frames, so head pose and crop placement vary "
        "beyond what the training identities show; [0, 0, 0] = off",
    )


class EvalConfig(Section):
    protocol: Literal["fixed_epochs", "nested"] = "fixed_epochs"
    max_folds: int = Field(0, ge=0, description="0 = every subject")
    nested_val_subjects: int = Field(3, ge=1, description="nested protocol: inner validation subjects per fold")
    baselines: bool = Field(True, description="also run LBP-TOP+SVM and the optical-flow CNN on the same folds")
    overlays: int = Field(6, ge=0, description="attention overlays written per report")


class TrainConfig(Section):
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    data: DataConfig = DataConfig()
    pretrain: StageConfig = StageConfig(epochs=5)
    remove: StageConfig = StageConfig(epochs=5)
    joint: StageConfig = StageConfig(epochs=20)
    eval: EvalConfig = EvalConfig()
