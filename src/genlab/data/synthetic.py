"""Synthetic regression problems with known ground truth: teacher-student and sparse linear regression."""

from __future__ import annotations

import torch


def _check(**values) -> None:
    for name, value in values.items():
        minimum = 0 if name == "noise" else 1
        if not value >= minimum:
            raise ValueError(f"option {name} must be >= {minimum} (got {value})")


def teacher_student(input_dim: int = 20, n_train: int = 1000, n_test: int = 1000, teacher_width: int = 32,
                    output_dim: int = 1, noise: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """x ~ N(0, I_d); y = W2 tanh(W1 x) + noise * N(0, 1), teacher weights N(0, 1/fan_in).

    Returns ``(x_train, y_train, x_test, y_test, teacher)`` with ``teacher = {"W1", "W2"}``.
    """
    _check(input_dim=input_dim, n_train=n_train, n_test=n_test, teacher_width=teacher_width,
           output_dim=output_dim, noise=noise)
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(teacher_width, input_dim, generator=g) / input_dim ** 0.5
    w2 = torch.randn(output_dim, teacher_width, generator=g) / teacher_width ** 0.5
    x = torch.randn(n_train + n_test, input_dim, generator=g)
    y = torch.tanh(x @ w1.T) @ w2.T + noise * torch.randn(n_train + n_test, output_dim, generator=g)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], {"W1": w1, "W2": w2}


def sparse_regression(input_dim: int = 100, k: int = 5, n_train: int = 200, n_test: int = 1000,
                      noise: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """x ~ N(0, I_d); y = x w* + noise * N(0, 1), with w* having exactly ``k`` non-zero N(0, 1) entries.

    Returns ``(x_train, y_train, x_test, y_test, w_star)``.
    """
    _check(input_dim=input_dim, k=k, n_train=n_train, n_test=n_test, noise=noise)
    if k > input_dim:
        raise ValueError(f"option k must be <= input_dim {input_dim} (got {k})")
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(input_dim)
    support = torch.randperm(input_dim, generator=g)[:k]
    values = torch.randn(k, generator=g)
    w[support] = torch.where(values == 0, torch.ones_like(values), values)
    x = torch.randn(n_train + n_test, input_dim, generator=g)
    y = (x @ w).unsqueeze(1) + noise * torch.randn(n_train + n_test, 1, generator=g)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], w
