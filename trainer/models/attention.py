"""Per-scale vision transformer of MFVAN (paper §3.2, Eqs. 5, 6, 8).

Attention is written out (not `nn.MultiheadAttention`) because the class token's attention to
the patches is an output of the network: it is f_c (masking by theta, L_mask) and it is the
heatmap the engine publishes. Plain matmul/softmax also exports to ONNX with no surprises.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embed_dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)  # [B, h, N, N]
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out), attn


class Block(nn.Module):
    """Pre-norm MSA + MLP (Eq. 8)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, attn = self.attn(self.norm1(x))
        x = x + a
        return x + self.mlp(self.norm2(x)), attn


def conv_stem(cin: int, dim: int, patch: int, max_halvings: int = 2) -> nn.Sequential:
    """Hierarchical patch embedding (HTNet/ViT-C style): up to `max_halvings` 3x3 stride-2 convs
    (BatchNorm + GELU, widths dim/4, dim/2) while the patch side stays even, then one conv with
    kernel = stride = the rest of the patch. Same g x g output grid as the plain patch conv, but
    the fine (sub-patch) structure of the input is read by overlapping 3x3 filters first instead
    of one linear map per patch.
    """
    layers: list[nn.Module] = []
    c, rest, k = cin, patch, 0
    while rest % 2 == 0 and rest > 1 and k < max_halvings:
        w = max(8, dim // (2 ** (max_halvings - k)))
        layers += [nn.Conv2d(c, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.GELU()]
        c, rest, k = w, rest // 2, k + 1
    layers.append(nn.Conv2d(c, dim, rest, rest))
    return nn.Sequential(*layers)


class ScaleTransformer(nn.Module):
    """One scale: conv patch embedding into a g x g grid, class token, positional embedding,
    L blocks; returns the tokens and f_c (class-token attention to each patch, last block,
    mean over heads; a patch's share of the class token's attention, so the f_c sum to < 1).
    `stem`: "patch" = one strided conv per patch (Eq. 6), "conv" = `conv_stem`.
    """

    def __init__(self, cin: int, size: int, grid: int, dim: int, depth: int, heads: int, stem: str = "patch") -> None:
        super().__init__()
        if size % grid:
            raise ValueError(f"a {size}x{size} map cannot be split into {grid}x{grid} patches; pick a grid that divides it")
        patch = size // grid
        if stem not in ("patch", "conv"):
            raise ValueError(f"stem {stem!r}: choose patch or conv")
        # Eq. 6: conv mapping of each patch
        self.embed = nn.Conv2d(cin, dim, patch, patch) if stem == "patch" else conv_stem(cin, dim, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.embed(x).flatten(2).transpose(1, 2)  # [B, g*g, D]
        t = torch.cat([self.cls.expand(f.shape[0], -1, -1), f], dim=1) + self.pos  # Eq. 5
        attn = t.new_zeros(())
        for blk in self.blocks:
            t, attn = blk(t)
        fc = attn[:, :, 0, 1:].mean(dim=1)  # [B, g*g]
        return self.norm(t), fc
