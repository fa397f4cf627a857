"""Shared building blocks for the reference models.

Helpers here pick 1-D or 2-D layers from a per-example input shape, build
activations by name and measure output sizes with a dry run, so that no model
computes flattened sizes by hand.

Input-shape convention (per example, batch dimension excluded):

* rank 1, ``(L,)``: a one-channel signal of length ``L`` (e.g. MNIST-1D);
  conv models insert the channel axis themselves (:class:`AddChannel`).
* rank 2, ``(C, L)``: a ``C``-channel signal, handled with ``Conv1d``.
* rank 3, ``(C, H, W)``: an image, handled with ``Conv2d``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from genlab.errors import ConfigError

#: Activation name -> module class. Order is the order shown in error messages.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for ``name`` (a key of :data:`ACTIVATIONS`).

    Modules are never in-place, so they are safe under ``torch.func`` transforms.
    """
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        allowed = ", ".join(ACTIVATIONS)
        raise ConfigError(f"unknown activation {name!r}; allowed: {allowed}") from None


def conv_layout(input_shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """Split a per-example shape into ``(in_channels, spatial_sizes)`` for a conv net.

    ``(L,)`` -> ``(1, (L,))``; ``(C, L)`` -> ``(C, (L,))``; ``(C, H, W)`` -> ``(C, (H, W))``.
    The number of spatial sizes (1 or 2) selects ``Conv1d`` or ``Conv2d``.
    """
    if len(input_shape) == 1:
        return 1, (int(input_shape[0]),)
    if len(input_shape) in (2, 3):
        return int(input_shape[0]), tuple(int(s) for s in input_shape[1:])
    raise ConfigError(
        f"conv models take inputs of rank 1 (L,), 2 (C, L) or 3 (C, H, W); got shape {tuple(input_shape)}"
    )


def conv_cls(dims: int) -> type[nn.Module]:
    """``nn.Conv1d`` for ``dims == 1``, ``nn.Conv2d`` for ``dims == 2``."""
    return {1: nn.Conv1d, 2: nn.Conv2d}[dims]


def batchnorm_cls(dims: int) -> type[nn.Module]:
    """``nn.BatchNorm1d`` for ``dims == 1``, ``nn.BatchNorm2d`` for ``dims == 2``."""
    return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]


def pool_cls(dims: int, kind: str = "max") -> type[nn.Module]:
    """Max (``kind="max"``) or average (``kind="avg"``) pooling class for ``dims`` spatial axes."""
    table = {
        ("max", 1): nn.MaxPool1d,
        ("max", 2): nn.MaxPool2d,
        ("avg", 1): nn.AvgPool1d,
        ("avg", 2): nn.AvgPool2d,
    }
    return table[(kind, dims)]


def global_avg_pool(dims: int) -> nn.Module:
    """Global average pool to size 1 over ``dims`` spatial axes (output keeps those axes)."""
    return {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}[dims](1)


class AddChannel(nn.Module):
    """Insert a channel axis: ``(B, L) -> (B, 1, L)``.

    Used first in conv models built for rank-1 inputs ``(L,)``. Works unchanged
    under ``torch.func.vmap`` (the vmapped axis is invisible to ``unsqueeze(1)``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` with a length-1 channel axis inserted after the batch axis."""
        return x.unsqueeze(1)


@torch.no_grad()
def dry_run(module: nn.Module, input_shape: tuple[int, ...]) -> torch.Size:
    """Per-example output shape of ``module`` for a per-example ``input_shape``.

    Runs one all-zeros example in eval mode (so BatchNorm running statistics are
    untouched and Dropout draws no random numbers), then restores the module's
    train/eval flags. The input uses the dtype of the module's first parameter.
    """
    param = next(module.parameters(), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        out = module(torch.zeros((1, *input_shape), dtype=dtype))
    finally:
        for m, training in flags:
            m.training = training
    return out.shape[1:]
