"""Synthetic regression problems with known ground truth: teacher-student and sparse linear regression.

All randomness comes from one ``torch.Generator`` seeded with the ``seed`` option, so the same options give
the same tensors. Inputs are not normalised further: they are already ``N(0, I)``.
"""

from __future__ import annotations

import torch

from genlab.data.checks import check_int, check_real, option


def _sizes(dataset: str, **values) -> dict[str, int]:
    return {k: check_int(v, option(dataset, k), 0 if k == "seed" else 1) for k, v in values.items()}


def teacher_student(input_dim: int = 20, n_train: int = 1000, n_test: int = 1000, teacher_width: int = 32,
                    output_dim: int = 1, noise: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """x ~ N(0, I_d); y = W2 tanh(W1 x) + noise * N(0, 1), teacher weights N(0, 1/fan_in).

    Returns ``(x_train, y_train, x_test, y_test, teacher)``: float32 ``(N, input_dim)`` inputs,
    ``(N, output_dim)`` targets and ``teacher = {"W1": (width, d), "W2": (output_dim, width)}``.

    Raises:
        DataError: a size below 1, a negative seed or noise, or a value of the wrong type.
    """
    s = _sizes("teacher-student", input_dim=input_dim, n_train=n_train, n_test=n_test,
               teacher_width=teacher_width, output_dim=output_dim, seed=seed)
    noise = check_real(noise, option("teacher-student", "noise"), 0.0)
    n, d, h, k = s["n_train"] + s["n_test"], s["input_dim"], s["teacher_width"], s["output_dim"]
    g = torch.Generator().manual_seed(s["seed"])
    w1 = torch.randn(h, d, generator=g) / d ** 0.5
    w2 = torch.randn(k, h, generator=g) / h ** 0.5
    x = torch.randn(n, d, generator=g)
    y = torch.tanh(x @ w1.T) @ w2.T + noise * torch.randn(n, k, generator=g)
    m = s["n_train"]
    return x[:m].clone(), y[:m].clone(), x[m:].clone(), y[m:].clone(), {"W1": w1, "W2": w2}


def sparse_regression(input_dim: int = 100, k: int = 5, n_train: int = 200, n_test: int = 1000,
                      noise: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """x ~ N(0, I_d); y = x w* + noise * N(0, 1), with w* having exactly ``k`` non-zero N(0, 1) entries.

    Returns ``(x_train, y_train, x_test, y_test, w_star)``: float32 ``(N, input_dim)`` inputs, ``(N, 1)``
    targets and ``w_star`` of shape ``(input_dim,)``.

    Raises:
        DataError: a size below 1, ``k > input_dim``, a negative seed or noise, or a value of the wrong type.
    """
    s = _sizes("sparse-regression", input_dim=input_dim, n_train=n_train, n_test=n_test, seed=seed)
    k = check_int(k, option("sparse-regression", "k"), 1, s["input_dim"])
    noise = check_real(noise, option("sparse-regression", "noise"), 0.0)
    n, d = s["n_train"] + s["n_test"], s["input_dim"]
    g = torch.Generator().manual_seed(s["seed"])
    w = torch.zeros(d)
    support = torch.randperm(d, generator=g)[:k]
    values = torch.randn(k, generator=g)
    w[support] = torch.where(values == 0, torch.ones_like(values), values)  # exactly k non-zeros
    x = torch.randn(n, d, generator=g)
    y = (x @ w).unsqueeze(1) + noise * torch.randn(n, 1, generator=g)
    m = s["n_train"]
    return x[:m].clone(), y[:m].clone(), x[m:].clone(), y[m:].clone(), w


def load_teacher_student(data_dir=None, **options) -> tuple:
    """``(x_train, y_train, x_test, y_test, info)`` of :func:`teacher_student`; ``data_dir`` is ignored."""
    *tensors, _ = teacher_student(**options)
    return (*tensors, {"normalisation": "none (x ~ N(0, I))",
                       "teacher": "one hidden tanh layer, weights N(0, 1/fan_in), no biases"})


def load_sparse_regression(data_dir=None, **options) -> tuple:
    """``(x_train, y_train, x_test, y_test, info)`` of :func:`sparse_regression`; ``info`` holds w*.

    ``info["support"]`` lists the indices of w*'s non-zero entries (ascending), ``info["w_star"]`` their values.
    """
    *tensors, w = sparse_regression(**options)
    support = torch.nonzero(w).flatten()
    return (*tensors, {"normalisation": "none (x ~ N(0, I))", "support": support.tolist(),
                       "w_star": w[support].tolist()})
