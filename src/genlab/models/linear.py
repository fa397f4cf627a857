"""Linear models: a linear (softmax or least-squares) predictor, and the diagonal linear network.

The diagonal linear network ``f(x) = <u * v, x>`` (Woodworth et al. 2020; HaoChen et al. 2021; Shalova et al.
2024) is the standard over-parameterised model with a known zero-loss manifold: with ``n < d`` points every
``w = u * v`` solving ``X w = y`` is a global minimum, and noise injected near that manifold moves ``(u, v)``
along it.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _input_dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


class LinearModel(nn.Module):
    """``flatten -> [Dropout] -> Linear(prod(input_shape), output_dim)``: linear / logistic / softmax regression."""

    def __init__(self, input_shape: tuple[int, ...], output_dim: int, dropout: float = 0.0):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.drop = _input_dropout(dropout)
        self.fc = nn.Linear(math.prod(self.input_shape), output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x.flatten(1)))


class DiagonalLinear(nn.Module):
    """``f_k(x) = sum_j u_kj v_kj x_j`` (no bias), ``u = v = init_scale`` at initialisation (Woodworth et al.).

    ``dropout`` drops input coordinates, which for one output is dropout on the products ``u_j v_j``.
    """

    def __init__(self, input_shape: tuple[int, ...], output_dim: int, init_scale: float = 0.1,
                 dropout: float = 0.0):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.drop = _input_dropout(dropout)
        d = math.prod(self.input_shape)
        self.u = nn.Parameter(torch.full((output_dim, d), float(init_scale)))
        self.v = nn.Parameter(torch.full((output_dim, d), float(init_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(x.flatten(1)) @ (self.u * self.v).T
