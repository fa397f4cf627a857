"""What ``load_dataset`` does after reading: subset, label corruption, and the targets' form (in that order)."""

from __future__ import annotations

import torch

from genlab.data.checks import check_int, check_real


def take_first(x: torch.Tensor, y: torch.Tensor, n: int | None, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` training points (as Cohen et al. take "the first 5,000"); all of them if ``n`` is None.

    Raises:
        DataError: ``n`` is not an integer in ``1..len(x)``.
    """
    if n is None:
        return x, y
    n = check_int(n, f"n_train ({name} has {len(x)} training points)", 1, len(x))
    return x[:n], y[:n]


def corrupt_labels(labels: torch.Tensor, fraction: float, num_classes: int, seed: int) -> tuple[torch.Tensor, int]:
    """Replace exactly ``round(fraction * n)`` labels, chosen at random, by a uniformly random *different* class.

    Returns a new label tensor (the input is not modified) and the number corrupted. The positions and new
    classes come from a ``torch.Generator`` seeded from ``seed``: the same arguments give the same labels.

    Raises:
        DataError: ``fraction`` outside [0, 1].
    """
    fraction = check_real(fraction, "label_noise", 0.0, 1.0)
    out = labels.clone()
    n_bad = round(fraction * len(labels))
    if n_bad == 0:
        return out, 0
    g = torch.Generator().manual_seed(seed + 104729)
    idx = torch.randperm(len(labels), generator=g)[:n_bad]
    shift = torch.randint(1, num_classes, (n_bad,), generator=g)  # 1..C-1: never the same class
    out[idx] = (labels[idx] + shift) % num_classes
    return out, n_bad


def as_targets(labels: torch.Tensor, loss: str, num_classes: int | None) -> torch.Tensor:
    """Targets for ``loss`` (a new tensor): int64 class indices for ``ce``; for ``mse``, float32 one-hot rows
    (entries 0 or 1) for classification or the float32 values themselves for regression."""
    if loss == "ce":
        return labels.long().clone()
    if num_classes is None:
        return labels.float().clone()
    return torch.nn.functional.one_hot(labels.long(), num_classes).float()


def standardise_on_first(x_train: torch.Tensor, x_test: torch.Tensor, m: int,
                         name: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Standardise every input channel (dimension 1) with the mean and std of the first ``m`` training points.

    Why: a data-dependent compression bound is on the training points after a prior split; statistics computed
    from the first ``m <= split`` points are part of the prior and cost the certificate no bits, while the
    dataset's own statistics (the published MNIST ones, say) were computed from all training points. Because
    the statistics are per channel, any per-channel affine normalisation the loader applied before (all of
    genlab's datasets: ``x/255`` and published means and stds) cancels out exactly, so the inputs depend on the
    first ``m`` raw points alone. A channel constant over those points keeps std 1 (no division by zero).

    Returns the new train and test inputs and ``{"standardised_on": m, "mean": [...], "std": [...]}``.

    Raises:
        DataError: ``m`` is not an integer in ``1..len(x_train)``.
    """
    m = check_int(m, f"normalise_first ({name} has {len(x_train)} training points)", 1, len(x_train))
    first = x_train[:m].double()
    dims = [0] + list(range(2, first.dim()))
    mean = first.mean(dims, keepdim=True)
    std = first.std(dims, keepdim=True, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    mean, std = mean.to(x_train.dtype), std.to(x_train.dtype)
    stats = {"standardised_on": m, "mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    return (x_train - mean) / std, (x_test - mean) / std, stats
