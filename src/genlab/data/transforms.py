"""What ``load_dataset`` does after reading: subset, label corruption, and the targets' form."""

from __future__ import annotations

import torch

from genlab.errors import DataError


def take_first(x: torch.Tensor, y: torch.Tensor, n: int | None, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` training points (as Cohen et al. take "the first 5,000")."""
    if n is None:
        return x, y
    if not 1 <= n <= len(x):
        raise DataError(f"n_train: {name} has {len(x)} training points; n_train must be in 1..{len(x)} (got {n})")
    return x[:n], y[:n]


def corrupt_labels(labels: torch.Tensor, fraction: float, num_classes: int, seed: int) -> tuple[torch.Tensor, int]:
    """Replace exactly ``round(fraction * n)`` labels, chosen at random, by a uniformly random *different* class.

    Returns the new labels and the number corrupted. Deterministic given ``seed``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"label_noise: must be in [0, 1] (got {fraction})")
    n_bad = round(fraction * len(labels))
    if n_bad == 0:
        return labels, 0
    g = torch.Generator().manual_seed(seed + 104729)
    idx = torch.randperm(len(labels), generator=g)[:n_bad]
    shift = torch.randint(1, num_classes, (n_bad,), generator=g)  # 1..C-1: never the same class
    out = labels.clone()
    out[idx] = (labels[idx] + shift) % num_classes
    return out, n_bad


def as_targets(labels: torch.Tensor, loss: str, num_classes: int | None) -> torch.Tensor:
    """Targets for ``loss``: class indices for ``ce``; one-hot float rows (or the values) for ``mse``."""
    if loss == "ce":
        return labels.long()
    if num_classes is None:
        return labels.float()
    return torch.nn.functional.one_hot(labels.long(), num_classes).float()
