"""The small CNN of Zhu, Wu, Yu, Wu & Ma (2019), used by Wang et al. (2021) for their SGLD noise experiments."""

from __future__ import annotations

import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.models.layers import AddChannel, conv_cls, conv_layout, dry_run, make_activation, pool_cls

#: Smallest spatial size (per side) that survives conv5 -> pool2 -> conv5 -> pool2 (no padding).
ZHU_MIN_SIZE = 16


class ZhuCNN(nn.Module):
    """``conv k5 (1 -> width) -> act -> maxpool 2 -> conv k5 (width -> width) -> act -> maxpool 2 -> flatten
    -> [Dropout] fc 50 -> act -> [Dropout] fc output_dim``.

    With ``width = 10`` on ``(1, 28, 28)`` and 10 outputs it has the papers' 11,330 parameters
    (260 + 2,510 + 8,050 + 510; the flatten is 10 x 4 x 4 = 160). Rank-1 inputs use ``Conv1d``.
    """

    def __init__(self, input_shape: tuple[int, ...], output_dim: int, width: int = 10, dropout: float = 0.0,
                 activation: str = "relu"):
        super().__init__()
        self.input_shape = tuple(input_shape)
        in_ch, sizes = conv_layout(self.input_shape)
        if min(sizes) < ZHU_MIN_SIZE:
            got = "x".join(str(s) for s in sizes)
            raise ConfigError(f"zhu-cnn needs inputs of at least {ZHU_MIN_SIZE} per side (got {got})")
        conv, pool = conv_cls(len(sizes)), pool_cls(len(sizes), "max")
        prefix: list[nn.Module] = [AddChannel()] if len(self.input_shape) == 1 else []
        self.features = nn.Sequential(*prefix, conv(in_ch, width, kernel_size=5), make_activation(activation),
                                      pool(2), conv(width, width, kernel_size=5), make_activation(activation),
                                      pool(2), nn.Flatten(start_dim=1))
        (flat,) = dry_run(self.features, self.input_shape)
        drop = [nn.Dropout(dropout)] if dropout > 0 else []
        self.classifier = nn.Sequential(*drop, nn.Linear(flat, 50), make_activation(activation),
                                        *[nn.Dropout(dropout)] * bool(dropout > 0), nn.Linear(50, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, *input_shape)`` to logits ``(B, output_dim)``."""
        return self.classifier(self.features(x))
