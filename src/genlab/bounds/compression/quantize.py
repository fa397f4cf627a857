"""Quantization of the subspace coordinates ``w`` to a learned codebook of ``L`` levels (Lotfi et al. 2022, Sec. 4).

Each coordinate is replaced by its nearest codebook value (or, with ``quant_rate``, the level that trades squared
error against code length: :func:`rate_aware`). During quantization-aware training the forward pass
uses ``c[nearest(w)]`` and the backward pass is the straight-through estimator for ``w`` (the gradient flows to
``w`` as if quantization were the identity) and the ordinary gradient for the codebook values ``c`` (each level
receives the summed gradient of the coordinates assigned to it), so both are trained by the ordinary loop.

The codebook is initialised from ``w`` by quantiles (levels at the ``(i + 1/2) / L`` quantiles) or by 1-D k-means
(Lloyd's iterations started from the quantiles; deterministic). The codebook the message stores is rounded to
float16 (:func:`stored_codebook`), and the predictor that is certified uses exactly those values.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.train.callbacks import Callback, TrainState
from genlab.train.plugins import BuildContext, register_plugin_factory

CODEBOOK_INITS = ("quantiles", "kmeans")
KMEANS_ITERATIONS = 100


def init_codebook(w: torch.Tensor, levels: int, method: str = "kmeans") -> torch.Tensor:
    """``levels`` sorted codebook values for the coordinates ``w`` (``quantiles`` or ``kmeans``), in ``w``'s
    floating dtype (computed in float64: a float32 net given a float64 codebook failed deep in its forward)."""
    if method not in CODEBOOK_INITS:
        raise ConfigError(f"codebook init: unknown method {method!r}; allowed: {', '.join(CODEBOOK_INITS)}")
    if levels < 1:
        raise ConfigError(f"quantization levels must be >= 1, got {levels}")
    dtype = w.dtype if w.is_floating_point() else torch.float32
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
    return centres.sort().values.to(dtype)


def nearest(w: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook value for each coordinate (ties to the lower index)."""
    return (w.reshape(-1, 1) - codebook.reshape(1, -1)).abs().argmin(dim=1)


def rate_aware(w: torch.Tensor, codebook: torch.Tensor, rate: float) -> torch.Tensor:
    """Entropy-penalised assignment (after Chou, Lookabaugh & Gray 1989): each coordinate takes the level ``k``
    minimising ``(w - c_k)^2 + rate * spacing^2 * l_k``, with ``l_k = -log2 p_k`` the code length of level ``k``
    under the nearest-level assignment's frequencies (Krichevsky-Trofimov smoothed, as the adaptive coder counts
    them) and ``spacing`` the codebook's mean gap (so ``rate`` does not depend on the scale of ``w``).

    Why: the message costs about ``d H(symbols)`` bits, so moving a coordinate that lies between two levels to
    the more frequent one saves bits at a small distortion, which quantization-aware training then repairs.
    One pass, not iterated to a fixed point: iterating drains the rarer levels one after another (measured: at
    ``rate`` 0.5 a level of a Gaussian's five empties after ~20 passes), which is not what a small penalty
    means. Deterministic, so the certified predictor is the trained one. ``rate = 0`` is :func:`nearest`.
    """
    assign = nearest(w, codebook)
    levels = codebook.numel()
    if rate <= 0 or levels < 2:
        return assign
    w, book = w.detach().reshape(-1, 1).double(), codebook.detach().reshape(1, -1).double()
    spacing2 = float((book.max() - book.min()) / (levels - 1)) ** 2
    counts = torch.bincount(assign, minlength=levels).double() + 0.5
    lengths = -torch.log2(counts / counts.sum())
    return ((w - book) ** 2 + rate * spacing2 * lengths.reshape(1, -1)).argmin(dim=1)


def stored_codebook(codebook: torch.Tensor) -> torch.Tensor:
    """The codebook as the message stores it: float16 values (returned in float32)."""
    return codebook.detach().to(torch.float16).to(torch.float32)


class Quantizer(nn.Module):
    """Maps ``w`` to ``c[nearest(w, c)]`` with a straight-through gradient for ``w``; ``c`` is a parameter.

    ``mask`` (a buffer, so checkpoints keep it) says which coordinates are quantized; the others pass through as
    floats. It starts full unless :meth:`quantize_more` builds it up: progressive (incremental) quantization
    (Zhou et al. 2017, INQ) quantizes the coordinates that lose least first and lets the still-float ones
    compensate, instead of rounding all ``d`` at once. The certified predictor is always fully quantized.
    """

    def __init__(self, codebook: torch.Tensor, d: int | None = None, rate: float = 0.0):
        super().__init__()
        self.rate = float(rate)   # a setting (quant_rate), rebuilt from the config: not checkpointed
        self.codebook = nn.Parameter(codebook.detach().clone())
        self.register_buffer("mask", torch.ones(d if d is not None else 0, dtype=torch.bool))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # runs saved before progressive quantization existed have no mask: they were fully quantized
        if prefix + "mask" not in state_dict:
            state_dict[prefix + "mask"] = torch.ones_like(self.mask)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def complete(self) -> bool:
        """Whether every coordinate is quantized."""
        return bool(self.mask.all())

    def quantize_more(self, w: torch.Tensor, fraction: float) -> int:
        """Grow the mask to at least ``fraction`` of the coordinates, adding the unquantized ones nearest to a
        codebook value (smallest rounding error) first; ties to the lower index. Never shrinks the mask.
        Returns how many coordinates it added."""
        target = min(len(self.mask), math.ceil(fraction * len(self.mask) - 1e-9))
        missing = target - int(self.mask.sum())
        if missing <= 0:
            return 0
        w = w.detach()
        error = (w - self.codebook.detach()[self.symbols(w)]).abs()
        error = torch.where(self.mask, torch.full_like(error, math.inf), error)
        order = torch.sort(error, stable=True).indices
        self.mask[order[:missing]] = True
        return missing

    @property
    def levels(self) -> int:
        return self.codebook.numel()

    def symbols(self, w: torch.Tensor) -> torch.Tensor:
        """The codebook index of each coordinate of ``w``: the nearest level, or with ``rate > 0`` the
        rate-aware one (:func:`rate_aware`)."""
        return rate_aware(w.detach(), self.codebook.detach(), self.rate)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        q = self.codebook[self.symbols(w)]
        if not self.complete:
            # unquantized coordinates: their float value, clamped to the codebook's range (left free, they drift far
            # beyond it to compensate, and rounding them at the end costs more than all the compensation gained)
            book = self.codebook.detach()
            q = torch.where(self.mask, q, w.detach().clamp(book.min(), book.max()))
        return q + (w - w.detach())   # value q; gradient identity for w, gathered gradient for the codebook


def progressive_fraction(step: int, total_steps: int, stages: int) -> float:
    """The fraction of ``w`` quantized at ``step`` of ``total_steps`` with ``stages`` equal stages:
    ``1/2, 3/4, ..., 1 - 2^-(K-1)``, then ``1`` in the last stage (so a finished run is fully quantized)."""
    stage = min(stages - 1, step * stages // max(total_steps, 1))
    return 1.0 if stage == stages - 1 else 1.0 - 0.5 ** (stage + 1)


class ProgressiveQuantization(Callback):
    """Grows the quantizer's mask at each stage boundary (a pure function of the step, so resumes agree)."""

    state_key = "progressive_quantization"

    def __init__(self, stages: int):
        self.stages = stages

    def settings(self) -> dict:
        return {"stages": self.stages}

    def _update(self, state: TrainState) -> None:
        quantizer = state.model.quantizer
        fraction = progressive_fraction(state.step, state.total_steps, self.stages)
        if quantizer.quantize_more(state.model.w, fraction):
            state.metrics["quantized_fraction"] = float(quantizer.mask.float().mean())

    def on_train_start(self, state: TrainState, resumed: bool) -> None:
        self._update(state)

    def on_step_end(self, state: TrainState) -> None:
        self._update(state)


def _quantization_plugins(ctx: BuildContext) -> list[Callback]:
    stages = ctx.config.plugins.quantization.quant_stages
    return [ProgressiveQuantization(stages)] if stages > 1 else []


register_plugin_factory("progressive-quantization", _quantization_plugins, order=10)
