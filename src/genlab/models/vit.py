"""Tiny Vision Transformer (Dosovitskiy et al., 2021) with hand-written attention."""

from __future__ import annotations

import math

import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.models.layers import AddChannel, conv_cls, conv_layout, dry_run, make_activation


def default_patch_size(input_shape: tuple[int, ...]) -> int:
    """Default ViT patch size for a per-example ``input_shape``.

    4 for 1-D signals and for images whose smaller side is at least 16 px, 2 for
    smaller images; if that does not divide every spatial side, the largest of
    2 and 1 that does.
    """
    _, sizes = conv_layout(input_shape)
    first = 2 if (len(sizes) == 2 and min(sizes) < 16) else 4
    for p in (first, 2, 1):
        if p <= first and all(s % p == 0 for s in sizes):
            return p
    return 1


class Attention(nn.Module):
    """Multi-head self-attention written with plain tensor ops.

    ``qkv = Linear(dim, 3*dim)``; per head ``softmax(q k^T / sqrt(d_head)) v``;
    output ``Linear(dim, dim)`` then ``Dropout``. Uses only reshape/matmul/softmax
    (no ``nn.MultiheadAttention`` or fused kernels), so ``torch.func`` transforms
    (``vmap`` of ``grad``, ``jacrev``, double backward) work through it.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim) -> (B, N, dim)``."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (B, heads, N, d_head)
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, n, d)
        return self.drop(self.proj(out))


class MLPBlock(nn.Module):
    """Transformer feed-forward: ``Linear(dim, hidden) -> act -> Dropout -> Linear(hidden, dim) -> Dropout``."""

    def __init__(self, dim: int, hidden: int, activation: str = "gelu", dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim) -> (B, N, dim)``."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, dim: int, heads: int, hidden: int, activation: str, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, hidden, activation, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim) -> (B, N, dim)``."""
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class VisionTransformer(nn.Module):
    """Tiny ViT (Dosovitskiy et al., "An image is worth 16x16 words", ICLR 2021).

    Patch embedding ``Conv(kernel = stride = patch_size)`` to ``width`` channels
    (``Conv1d`` for rank-1/2 inputs, ``Conv2d`` for images), a learned class token
    (initialised to zeros) prepended, a learned positional embedding (normal,
    std 0.02), ``depth`` pre-LN :class:`Block` of dimension ``width`` with
    ``heads`` heads and MLP hidden size ``round(mlp_ratio * width)``, a final
    LayerNorm and a ``Linear`` head on the class token. Dropout ``p`` (when > 0)
    follows the attention output projection and both MLP layers.

    Defaults: width 64, depth 4, heads 4, mlp_ratio 2, GELU, patch size from
    :func:`default_patch_size` (4, or 2 for images under 16 px). The patch size
    must divide every spatial side and ``heads`` must divide ``width``.
    Parameter counts with 10 outputs: 135,754 on ``(40,)`` (10 patches + class
    token), 139,018 on ``(1, 28, 28)`` (49 patches of 4x4).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        output_dim: int,
        width: int = 64,
        depth: int = 4,
        dropout: float = 0.0,
        activation: str = "gelu",
        patch_size: int | None = None,
        heads: int = 4,
        mlp_ratio: float = 2.0,
    ):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.output_dim = output_dim
        in_ch, sizes = conv_layout(self.input_shape)
        if patch_size is None:
            patch_size = default_patch_size(self.input_shape)
        if any(s % patch_size for s in sizes):
            got = "x".join(str(s) for s in sizes)
            divisors = [p for p in range(1, min(sizes) + 1) if all(s % p == 0 for s in sizes)]
            raise ConfigError(
                f"vit patch_size {patch_size} does not divide the input size {got}; "
                f"allowed: {', '.join(map(str, divisors))}"
            )
        if width % heads:
            divisors = [h for h in range(1, width + 1) if width % h == 0]
            raise ConfigError(
                f"vit width {width} is not divisible by heads {heads}; allowed heads: {', '.join(map(str, divisors))}"
            )
        hidden = round(mlp_ratio * width)
        if hidden < 1:
            raise ConfigError(
                f"vit mlp_ratio {mlp_ratio} gives an empty MLP for width {width}; use mlp_ratio >= {1 / width:g}"
            )
        self.patch_size = patch_size
        self.heads = heads
        self.mlp_ratio = mlp_ratio
        prefix: list[nn.Module] = [AddChannel()] if len(self.input_shape) == 1 else []
        self.patch_embed = nn.Sequential(
            *prefix,
            conv_cls(len(sizes))(in_ch, width, kernel_size=patch_size, stride=patch_size),
            nn.Flatten(start_dim=2),
        )
        width_out, num_patches = dry_run(self.patch_embed, self.input_shape)
        assert width_out == width and num_patches == math.prod(s // patch_size for s in sizes)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.empty(1, num_patches + 1, width))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*(Block(width, heads, hidden, activation, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, *input_shape)`` to logits ``(B, output_dim)``."""
        tokens = self.patch_embed(x).transpose(1, 2)  # (B, N, width)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])
