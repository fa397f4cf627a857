"""CIFAR-style ResNet (He, Zhang, Ren & Sun, 2016), 1-D or 2-D, with optional BatchNorm."""

from __future__ import annotations

import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.models.layers import (
    AddChannel,
    batchnorm_cls,
    conv_cls,
    conv_layout,
    dry_run,
    global_avg_pool,
    make_activation,
)


def _norm(dims: int, channels: int, batchnorm: bool) -> nn.Module:
    return batchnorm_cls(dims)(channels) if batchnorm else nn.Identity()


class BasicBlock(nn.Module):
    """Residual block ``act(bn(conv3(act(bn(conv3(x))))) + shortcut(x))``.

    The shortcut is the identity when shape is kept, and otherwise a projection
    ``1x1 conv (stride s) -> BatchNorm`` (He et al.'s option B). Convs have no bias
    (standard with BatchNorm; kept when ``batchnorm=False`` so that turning BN off
    changes nothing else). With ``batchnorm=False`` every BatchNorm is ``nn.Identity``.
    """

    def __init__(self, dims: int, in_ch: int, out_ch: int, stride: int, batchnorm: bool, activation: str):
        super().__init__()
        conv = conv_cls(dims)
        self.conv1 = conv(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm(dims, out_ch, batchnorm)
        self.act1 = make_activation(activation)
        self.conv2 = conv(out_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = _norm(dims, out_ch, batchnorm)
        if stride != 1 or in_ch != out_ch:
            self.shortcut: nn.Module = nn.Sequential(
                conv(in_ch, out_ch, kernel_size=1, stride=stride, bias=False), _norm(dims, out_ch, batchnorm)
            )
        else:
            self.shortcut = nn.Identity()
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the residual block."""
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet of depth ``6n + 2`` (He et al., "Deep residual learning for
    image recognition", CVPR 2016, Sec. 4.2).

    ``stem: conv3 (width) -> BN -> act``; three stages of ``n`` :class:`BasicBlock`
    with ``width``, ``2*width``, ``4*width`` channels, the first block of stages
    2 and 3 striding by 2 with a projection shortcut; global average pool,
    ``Dropout`` (when ``dropout > 0``) and ``Linear`` head.
    Defaults: depth 20 (n = 3), width 16, ReLU, BatchNorm on.

    ``batchnorm=False`` replaces every BatchNorm with ``nn.Identity`` and changes
    nothing else (convs stay bias-free), for curvature experiments.
    Rank-1/2 inputs use ``Conv1d``/``BatchNorm1d``, rank-3 inputs ``Conv2d``.
    Any spatial size >= 1 works (stride-2 convs map ``n`` to ``ceil(n/2)``).

    Parameter counts (defaults, 10 outputs): 272,474 on ``(3, 32, 32)`` (the
    usual "0.27M" ResNet-20 figure; option A would give 269,722), 272,186 on
    ``(1, 28, 28)``, 93,914 on ``(40,)``.

    Attributes: ``stem``, ``stages`` (``nn.ModuleList`` of three ``nn.Sequential``),
    ``pool``, ``dropout``, ``head``.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        output_dim: int,
        width: int = 16,
        depth: int = 20,
        dropout: float = 0.0,
        activation: str = "relu",
        batchnorm: bool = True,
    ):
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ConfigError(f"resnet depth must be 6n+2 (8, 14, 20, 26, 32, 44, 56, 110, ...); got {depth}")
        self.input_shape = tuple(input_shape)
        self.output_dim = output_dim
        n = (depth - 2) // 6
        in_ch, sizes = conv_layout(self.input_shape)
        dims = len(sizes)
        prefix: list[nn.Module] = [AddChannel()] if len(self.input_shape) == 1 else []
        self.stem = nn.Sequential(
            *prefix,
            conv_cls(dims)(in_ch, width, kernel_size=3, padding=1, bias=False),
            _norm(dims, width, batchnorm),
            make_activation(activation),
        )
        stages = []
        ch = width
        for s, out_ch in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(BasicBlock(dims, ch, out_ch, stride, batchnorm, activation))
                ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.Sequential(global_avg_pool(dims), nn.Flatten(start_dim=1))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(ch, output_dim)
        dry_run(self, self.input_shape)  # fail at construction, not at first use

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, *input_shape)`` to logits ``(B, output_dim)``."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.dropout(self.pool(x)))
