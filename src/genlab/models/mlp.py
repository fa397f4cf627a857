"""Fully connected network (multilayer perceptron)."""

from __future__ import annotations

import math

import torch
from torch import nn

from genlab.models.layers import make_activation


class MLP(nn.Module):
    """Flatten, ``depth`` hidden ``Linear(width) -> activation [-> Dropout]``, then ``Linear(output_dim)``.

    Defaults (via :func:`genlab.models.build_model`): width 100, depth 2, ReLU.
    Any input rank is flattened, so ``(40,)`` and ``(C, H, W)`` both work.
    Dropout (when ``dropout > 0``) follows every hidden activation.
    Cohen et al. (2021, "Gradient descent on neural networks typically occurs at
    the edge of stability") use width 200, depth 2, tanh.

    Parameter count: ``d*w + w + (depth-1)*(w*w + w) + w*k + k`` for ``d`` input
    features, ``w`` width and ``k`` outputs; 15,210 on ``(40,)`` and 89,610 on
    ``(1, 28, 28)`` with the defaults and 10 outputs.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        output_dim: int,
        width: int = 100,
        depth: int = 2,
        dropout: float = 0.0,
        activation: str = "relu",
    ):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.output_dim = output_dim
        in_features = math.prod(self.input_shape)
        layers: list[nn.Module] = [nn.Flatten(start_dim=1)]
        for _ in range(depth):
            layers += [nn.Linear(in_features, width), make_activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_features = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(in_features, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, *input_shape)`` to logits ``(B, output_dim)``."""
        return self.head(self.body(x))
