"""Small strided CNN after the MNIST-1D paper (Greydanus & Kobak, 2024)."""

from __future__ import annotations

import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.models.layers import AddChannel, conv_cls, conv_layout, dry_run, make_activation

#: The first conv (kernel 5, padding 1) needs at least this many positions per side.
CNN_MIN_SIZE = 3


class SmallCNN(nn.Module):
    """Strided CNN from the MNIST-1D benchmark (Greydanus & Kobak, "Scaling down
    deep learning with MNIST-1D", ICML 2024), which reaches about 94% on MNIST-1D.

    ``depth`` conv layers of ``width`` channels, each ``stride 2, padding 1`` and
    followed by the activation; the first has kernel 5, the rest kernel 3. Then
    flatten, ``Dropout`` (when ``dropout > 0``) and one ``Linear`` to ``output_dim``.
    Defaults: width 25, depth 3, ReLU; no BatchNorm (``batchnorm`` is ignored).

    Rank-1/2 inputs use ``Conv1d``, rank-3 inputs ``Conv2d``. Each spatial side must
    be at least 3 for the first conv; after that a kernel-3/stride-2/padding-1 conv
    maps size ``n >= 1`` to ``ceil(n / 2) >= 1``, so any depth is valid (extra
    layers at size 1 keep working) and no size ever reaches 0.

    Sizes on ``(40,)``: 40 -> 19 -> 10 -> 5, flatten 25*5 = 125; parameters
    ``(5*25+25) + 2*(3*25*25+25) + (125*10+10) = 5,210`` for 10 outputs.
    On ``(1, 28, 28)``: 28 -> 13 -> 7 -> 4, 15,960 parameters.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        output_dim: int,
        width: int = 25,
        depth: int = 3,
        dropout: float = 0.0,
        activation: str = "relu",
    ):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.output_dim = output_dim
        in_ch, sizes = conv_layout(self.input_shape)
        if min(sizes) < CNN_MIN_SIZE:
            got = "x".join(str(s) for s in sizes)
            raise ConfigError(f"cnn needs inputs of at least {CNN_MIN_SIZE} per side (got {got}); use mlp instead")
        conv = conv_cls(len(sizes))
        layers: list[nn.Module] = [AddChannel()] if len(self.input_shape) == 1 else []
        for i in range(depth):
            layers += [
                conv(in_ch if i == 0 else width, width, kernel_size=5 if i == 0 else 3, stride=2, padding=1),
                make_activation(activation),
            ]
        layers.append(nn.Flatten(start_dim=1))
        self.features = nn.Sequential(*layers)
        (flat,) = dry_run(self.features, self.input_shape)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(flat, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, *input_shape)`` to logits ``(B, output_dim)``."""
        return self.head(self.dropout(self.features(x)))
