"""LeNet-5 (LeCun et al., 1998), in 2-D for images and 1-D for signals."""

from __future__ import annotations

import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.models.layers import AddChannel, conv_cls, conv_layout, dry_run, make_activation, pool_cls

#: Smallest spatial size (per side) that survives conv5(pad 2) -> pool2 -> conv5 -> pool2.
LENET_MIN_SIZE = 12


class LeNet5(nn.Module):
    """Classic LeNet-5 (LeCun, Bottou, Bengio & Haffner, 1998).

    ``conv k5 (width ch, padding 2) -> act -> pool 2 -> conv k5 (round(16*width/6) ch)
    -> act -> pool 2 -> flatten -> [Dropout] fc 120 -> act -> [Dropout] fc 84 -> act
    -> [Dropout] fc output_dim``.

    * ``width`` is the number of channels of the first conv (default 6, giving the
      classic 6/16 channels); the second conv has ``max(1, round(16 * width / 6))``.
      The fc sizes 120 and 84 are fixed. ``depth`` does not apply.
    * ``activation`` default ReLU (``"tanh"`` gives the historical flavour).
    * ``pooling``: ``"max"`` (default) or ``"avg"`` (the original subsampling).
    * Dropout (when ``dropout > 0``) precedes each of the three fc layers.
    * Rank-1/2 inputs use ``Conv1d``/``MaxPool1d``; rank-3 inputs ``Conv2d``.
      Every spatial side must be at least 12 (:data:`LENET_MIN_SIZE`).

    Parameter counts with 10 outputs: 61,706 on ``(1, 28, 28)`` (the classic
    figure: 156 + 2,416 + 48,120 + 10,164 + 850); 27,026 on ``(40,)`` (sizes
    40 -> 20 -> 16 -> 8, flatten 16*8 = 128).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        output_dim: int,
        width: int = 6,
        dropout: float = 0.0,
        activation: str = "relu",
        pooling: str = "max",
    ):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.output_dim = output_dim
        self.pooling = pooling
        in_ch, sizes = conv_layout(self.input_shape)
        if min(sizes) < LENET_MIN_SIZE:
            got = "x".join(str(s) for s in sizes)
            raise ConfigError(
                f"lenet5 needs inputs of at least {LENET_MIN_SIZE} per side (got {got}); "
                "use cnn or mlp for smaller inputs"
            )
        if pooling not in ("max", "avg"):
            raise ConfigError(f"unknown lenet5 pooling {pooling!r}; allowed: max, avg")
        dims = len(sizes)
        conv, pool = conv_cls(dims), pool_cls(dims, pooling)
        ch2 = max(1, round(16 * width / 6))
        prefix: list[nn.Module] = [AddChannel()] if len(self.input_shape) == 1 else []
        self.features = nn.Sequential(
            *prefix,
            conv(in_ch, width, kernel_size=5, padding=2),
            make_activation(activation),
            pool(2),
            conv(width, ch2, kernel_size=5),
            make_activation(activation),
            pool(2),
            nn.Flatten(start_dim=1),
        )
        (flat,) = dry_run(self.features, self.input_shape)

        def drop() -> list[nn.Module]:
            return [nn.Dropout(dropout)] if dropout > 0 else []

        self.classifier = nn.Sequential(
            *drop(),
            nn.Linear(flat, 120),
            make_activation(activation),
            *drop(),
            nn.Linear(120, 84),
            make_activation(activation),
            *drop(),
            nn.Linear(84, output_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, *input_shape)`` to logits ``(B, output_dim)``."""
        return self.classifier(self.features(x))
