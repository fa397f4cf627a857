"""Noise injected into the training step (``--noise``): label noise, DropConnect, anti-correlated perturbed GD.

These are the noise structures of Shalova, Schlichting & Peletier (2024) near a zero-loss manifold; plain
mini-batch noise is ``--optimizer sgd`` and dropout is the model's ``--dropout``. Each injection is a pure
function of ``(seed, step)`` (no state to checkpoint), so a resumed run follows the same trajectory.

* ``label`` (sigma): regression (MSE) targets get ``y + sigma * N(0, 1)`` afresh each step (Blanc et al.;
  Damian et al.; Li, Wang & Arora); classification labels are replaced, each with probability ``sigma``, by a
  uniformly drawn class.
* ``dropconnect`` (sigma = drop rate p): the gradient is taken at ``w * m``, ``m`` i.i.d. Bernoulli(1 - p) / (1 - p)
  (mean 1, variance p / (1 - p)), and by the chain rule is ``m * grad L(w * m)``.
* ``anti-pgd`` (sigma): after each optimizer step ``w += xi_{t+1} - xi_t`` with ``xi_t ~ N(0, sigma^2 I)``
  (Orvieto et al. 2022), anti-correlated perturbations whose sum telescopes.
"""

from __future__ import annotations

import torch

from genlab.objective import Objective
from genlab.seeding import keyed_generator

KINDS = ("none", "label", "dropconnect", "anti-pgd")


def _generator(seed: int, step: int, salt: int) -> torch.Generator:
    return keyed_generator(seed, step, salt, 17)


def noisy_gradient(kind: str, sigma: float, objective: Objective, indices: torch.Tensor | None, *, seed: int,
                   step: int) -> float:
    """Accumulate into ``.grad`` the gradient of the step's loss with the injection ``kind``; returns the loss."""
    if kind in ("none", "anti-pgd") or sigma == 0:
        return objective.accumulate_grad(indices)
    gen = _generator(seed, step, 1)
    if kind == "label":
        k = objective.num_outputs() if objective.classification else 0  # eval mode: no dropout RNG draws

        def transform(y: torch.Tensor) -> torch.Tensor:
            if k and not y.is_floating_point():  # class indices
                flip = torch.rand(y.shape, generator=gen) < sigma
                other = torch.randint(0, k, y.shape, generator=gen)
                return torch.where(flip.to(y.device), other.to(y), y)
            return y + sigma * torch.randn(y.shape, generator=gen, dtype=y.dtype).to(y.device)
        return objective.accumulate_grad(indices, target_transform=transform)
    if kind == "dropconnect":
        params = [p for p in objective.model.parameters() if p.requires_grad]
        masks = [(torch.rand(p.shape, generator=gen) >= sigma).to(p) / (1 - sigma) for p in params]
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, m in zip(params, masks):
                p.mul_(m)
        try:
            loss = objective.accumulate_grad(indices)
        finally:
            with torch.no_grad():
                for p, w in zip(params, saved):
                    p.copy_(w)
        for p, m in zip(params, masks):
            if p.grad is not None:
                p.grad.mul_(m)
        return loss
    raise ValueError(f"unknown noise {kind!r}; allowed: {', '.join(KINDS)}")


def after_step(kind: str, sigma: float, model: torch.nn.Module, *, seed: int, step: int) -> None:
    """What an injection does after the optimizer's step ``step`` (0-based): anti-PGD's ``xi_{t+1} - xi_t``."""
    if kind != "anti-pgd" or sigma == 0:
        return
    g_next, g_now = _generator(seed, step + 1, 2), _generator(seed, step, 2)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                xi_next = torch.randn(p.shape, generator=g_next, dtype=p.dtype).to(p.device)
                xi_now = torch.randn(p.shape, generator=g_now, dtype=p.dtype).to(p.device)
                p.add_(sigma * (xi_next - xi_now))
