"""Quantization of the subspace coordinates ``w`` to a learned codebook of ``L`` levels (Lotfi et al. 2022, Sec. 4).

Each coordinate is replaced by its nearest codebook value. During quantization-aware training the forward pass
uses ``c[nearest(w)]`` and the backward pass is the straight-through estimator for ``w`` (the gradient flows to
``w`` as if quantization were the identity) and the ordinary gradient for the codebook values ``c`` (each level
receives the summed gradient of the coordinates assigned to it), so both are trained by the ordinary loop.

The codebook is initialised from ``w`` by quantiles (levels at the ``(i + 1/2) / L`` quantiles) or by 1-D k-means
(Lloyd's iterations started from the quantiles; deterministic). The codebook the message stores is rounded to
float16 (:func:`stored_codebook`), and the predictor that is certified uses exactly those values.
"""

from __future__ import annotations

import torch
from torch import nn

from genlab.errors import ConfigError

CODEBOOK_INITS = ("quantiles", "kmeans")
KMEANS_ITERATIONS = 100


def init_codebook(w: torch.Tensor, levels: int, method: str = "kmeans") -> torch.Tensor:
    """``levels`` sorted codebook values for the coordinates ``w`` (``quantiles`` or ``kmeans``)."""
    if method not in CODEBOOK_INITS:
        raise ConfigError(f"codebook init: unknown method {method!r}; allowed: {', '.join(CODEBOOK_INITS)}")
    if levels < 1:
        raise ConfigError(f"quantization levels must be >= 1, got {levels}")
    w = w.detach().double().reshape(-1)
    probs = (torch.arange(levels, dtype=torch.float64) + 0.5) / levels
    centres = torch.quantile(w, probs)
    if method == "kmeans":
        for _ in range(KMEANS_ITERATIONS):
            assign = nearest(w, centres)
            sums = torch.zeros(levels, dtype=w.dtype).index_add_(0, assign, w)
            counts = torch.bincount(assign, minlength=levels).to(w.dtype)
            new = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
            if torch.equal(new, centres):
                break
            centres = new
    return centres.sort().values


def nearest(w: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook value for each coordinate (ties to the lower index)."""
    return (w.reshape(-1, 1) - codebook.reshape(1, -1)).abs().argmin(dim=1)


def stored_codebook(codebook: torch.Tensor) -> torch.Tensor:
    """The codebook as the message stores it: float16 values (returned in float32)."""
    return codebook.detach().to(torch.float16).to(torch.float32)


class Quantizer(nn.Module):
    """Maps ``w`` to ``c[nearest(w, c)]`` with a straight-through gradient for ``w``; ``c`` is a parameter."""

    def __init__(self, codebook: torch.Tensor):
        super().__init__()
        self.codebook = nn.Parameter(codebook.detach().clone())

    @property
    def levels(self) -> int:
        return self.codebook.numel()

    def symbols(self, w: torch.Tensor) -> torch.Tensor:
        """The codebook index of each coordinate of ``w``."""
        return nearest(w.detach(), self.codebook.detach())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        q = self.codebook[nearest(w.detach(), self.codebook.detach())]
        return q + (w - w.detach())   # value q; gradient identity for w, gathered gradient for the codebook
