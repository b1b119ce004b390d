"""Convolutional parts of MFVAN: the identity-removal autoencoders and the global head.

Paper §3.1: a *teacher* autoencoder (residual encoder, deconvolution decoder) is pre-trained to
reconstruct every frame (Eq. 1), then teacher and a shallow *student* learn apex -> onset
(Eqs. 2-4). Only the student runs at inference: its reconstruction is the identity image
(apex-only form) and two of its feature maps are MFVAN's scales 2 and 3.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def conv_bn_act(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def deconv_bn_act(cin: int, cout: int) -> nn.Sequential:
    # kernel 4, stride 2, padding 1 doubles the size exactly (no checkerboard from odd kernels)
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """Basic residual block (two 3x3 convs + identity skip)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, 1, 1, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, 1, 1, bias=False),
            nn.BatchNorm2d(ch),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class Decoder(nn.Module):
    """Three stride-2 deconvolutions back to the crop size, sigmoid to [0, 1] RGB."""

    def __init__(self, widths: tuple[int, int, int]) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.up = nn.Sequential(deconv_bn_act(c3, c2), deconv_bn_act(c2, c1), deconv_bn_act(c1, c1))
        self.out = nn.Conv2d(c1, 3, 3, 1, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(self.up(f)))


class TeacherAE(nn.Module):
    """Residual encoder (stride 8) + deconvolution decoder. Training-only: never exported."""

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128), blocks: int = 2) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.encoder = nn.Sequential(
            conv_bn_act(3, c1, 2),
            *[ResBlock(c1) for _ in range(blocks)],
            conv_bn_act(c1, c2, 2),
            *[ResBlock(c2) for _ in range(blocks)],
            conv_bn_act(c2, c3, 2),
            *[ResBlock(c3) for _ in range(blocks)],
        )
        self.decoder = Decoder(widths)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.encoder(x)
        return self.decoder(f), f


class StudentAE(nn.Module):
    """Shallow apex -> onset mapper: one conv per stride, so it is cheap enough to run live.

    Returns (reconstruction, f2 at stride 4, f3 at stride 8); f2/f3 are MFVAN's scales 2 and 3.
    """

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), teacher_width: int = 128) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.s1 = conv_bn_act(3, c1, 2)
        self.s2 = conv_bn_act(c1, c2, 2)
        self.s3 = conv_bn_act(c2, c3, 2)
        self.decoder = Decoder(widths)
        # feature-distillation adapter: student f3 -> teacher's bottleneck width
        self.adapter = nn.Conv2d(c3, teacher_width, 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f2 = self.s2(self.s1(x))
        return f2, self.s3(f2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f2, f3 = self.encode(x)
        return self.decoder(f3), f2, f3


class GlobalHead(nn.Module):
    """Small CNN on the de-identified change image -> one D-dim global feature (GAP).

    `strides` stride-2 convs of the four (the rest stride 1): 3 keeps a finer last map (6 x 6 at
    48 px) for `pool: flatten` to read by position; `dropout` acts on what the projection reads.
    """

    def __init__(self, cin: int, dim: int, widths: tuple[int, int, int] = (16, 32, 64), pool: str = "gap", size: int = 0,
                 strides: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        c1, c2, c3 = widths
        chans = (cin, c1, c2, c3, c3)
        self.net = nn.Sequential(*(conv_bn_act(chans[i], chans[i + 1], 2 if i < strides else 1) for i in range(4)))
        if pool not in ("gap", "flatten"):
            raise ValueError(f"global_pool {pool!r}: choose gap or flatten")
        self.pool = pool
        side = size
        for _ in range(strides):  # the map side after the stride-2 3x3 convs (padding 1)
            side = (side + 1) // 2
        if pool == "flatten" and side < 1:
            raise ValueError("global_pool flatten needs the input size")
        # flatten: the last map is read position by position (where the motion is), not averaged away
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.proj = nn.Linear(c3 * side * side if pool == "flatten" else c3, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net(x)
        return self.proj(self.drop(f.flatten(1) if self.pool == "flatten" else f.mean(dim=(2, 3))))
