"""Noise injected into the training step (``--noise``): label noise, DropConnect, anti-correlated perturbed GD.

These are the noise structures of Shalova, Schlichting & Peletier (2024) near a zero-loss manifold; plain
mini-batch noise is ``--optimizer sgd`` and dropout is the model's ``--dropout``. Each injection is a pure
function of ``(seed, step)`` (no state to checkpoint), so a resumed run follows the same trajectory.

:class:`NoiseInjection` is the training plugin: it wraps the step's gradient computation, so it works with
every optimizer, closure optimizers (IVON, variational GD) included -- each posterior sample of a step gets
its own draw, continuing the step's random stream. In a plain loop::

    noise = NoiseInjection("label", 0.1, seed=0)
    loss = noise.gradient(objective, step, indices)   # .grad of the noisy loss (call zero_grad first)
    optimizer.step(); noise.after_step(model, step)

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
from genlab.train.callbacks import Callback, TrainState
from genlab.train.plugins import BuildContext, register_plugin_factory

KINDS = ("none", "label", "dropconnect", "anti-pgd")


def _generator(seed: int, step: int, salt: int) -> torch.Generator:
    return keyed_generator(seed, step, salt, 17)


def label_transform(sigma: float, gen: torch.Generator, num_classes: int):
    """Targets -> noisy targets: class indices flipped with probability ``sigma`` to a uniform class (of
    ``num_classes``; 0 means regression), float targets plus ``sigma * N(0, 1)``; draws from ``gen``."""
    def transform(y: torch.Tensor) -> torch.Tensor:
        if num_classes and not y.is_floating_point():  # class indices
            flip = torch.rand(y.shape, generator=gen) < sigma
            other = torch.randint(0, num_classes, y.shape, generator=gen)
            return torch.where(flip.to(y.device), other.to(y), y)
        return y + sigma * torch.randn(y.shape, generator=gen, dtype=y.dtype).to(y.device)
    return transform


def noisy_compute(kind: str, sigma: float, objective: Objective, compute, *, seed: int, step: int):
    """Wrap ``compute(target_transform=None) -> loss`` (which accumulates the step's gradient into ``.grad``)
    with the injection ``kind``. The draws of step ``step`` come from one generator keyed on ``(seed, step)``;
    a wrapper called several times (several posterior samples) continues that stream."""
    if kind in ("none", "anti-pgd") or sigma == 0:
        return compute
    if kind not in KINDS:
        raise ValueError(f"unknown noise {kind!r}; allowed: {', '.join(KINDS)}")
    gen = _generator(seed, step, 1)
    if kind == "label":
        k = objective.num_outputs() if objective.classification else 0  # eval mode: no dropout RNG draws
        transform = label_transform(sigma, gen, k)

        def with_label_noise(target_transform=None, **rest):   # rest: input_transform (augmentation) passed on
            both = transform if target_transform is None else (lambda y: transform(target_transform(y)))
            return compute(target_transform=both, **rest)
        return with_label_noise

    def with_dropconnect(target_transform=None, **rest):
        params = [p for p in objective.model.parameters() if p.requires_grad]
        masks = [(torch.rand(p.shape, generator=gen) >= sigma).to(p) / (1 - sigma) for p in params]
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, m in zip(params, masks):
                p.mul_(m)
        try:
            loss = compute(target_transform=target_transform, **rest)
        finally:
            with torch.no_grad():
                for p, w in zip(params, saved):
                    p.copy_(w)
        for p, m in zip(params, masks):
            if p.grad is not None:
                p.grad.mul_(m)
        return loss
    return with_dropconnect


def noisy_gradient(kind: str, sigma: float, objective: Objective, indices: torch.Tensor | None, *, seed: int,
                   step: int, batch=None) -> float:
    """Accumulate into ``.grad`` the gradient of the step's loss (over ``indices``, or one given ``batch``)
    with the injection ``kind``; returns the loss."""
    def compute(target_transform=None):
        return objective.accumulate_grad(indices, target_transform=target_transform, batch=batch)
    return noisy_compute(kind, sigma, objective, compute, seed=seed, step=step)()


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


class NoiseInjection(Callback):
    """Training plugin: label noise, DropConnect or anti-PGD (module docstring), keyed on ``(seed, step)``.

    Args:
        kind: ``"label"``, ``"dropconnect"`` or ``"anti-pgd"`` (``"none"``: nothing).
        sigma: label-noise std or flip probability, drop rate, or perturbation std.
        seed: the run's seed (default: the loop's).
    """

    state_key = "noise"

    def __init__(self, kind: str, sigma: float, seed: int | None = None):
        if kind not in KINDS:
            raise ValueError(f"noise: unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
        if kind == "dropconnect" and not 0 <= sigma < 1:
            raise ValueError(f"noise: the dropconnect drop rate must be in [0, 1) (got {sigma})")
        self.kind, self.sigma, self.seed = kind, float(sigma), seed

    def settings(self) -> dict:
        return {"kind": self.kind, "sigma": self.sigma, "seed": self.seed}

    def _seed(self, state: TrainState) -> int:
        return state.seed if self.seed is None else self.seed

    def wrap_gradient(self, state: TrainState, compute):
        return noisy_compute(self.kind, self.sigma, state.objective, compute, seed=self._seed(state), step=state.step)

    def after_optimizer_step(self, state: TrainState) -> None:
        after_step(self.kind, self.sigma, state.model, seed=self._seed(state), step=state.step)

    # ---------------------------------------------------------- a plain loop
    def gradient(self, objective: Objective, step: int, indices: torch.Tensor | None = None, batch=None) -> float:
        """In your own loop: accumulate the noisy gradient of step ``step`` into ``.grad``; returns the loss."""
        return noisy_gradient(self.kind, self.sigma, objective, indices, seed=self.seed or 0, step=step, batch=batch)

    def noisy_targets(self, targets: torch.Tensor, step: int, num_classes: int = 0) -> torch.Tensor:
        """Label noise for a loop that computes its own loss (a Lightning ``training_step``): the targets of
        step ``step`` with this injection's noise (``num_classes`` for class indices, 0 for regression)."""
        if self.kind != "label":
            raise ValueError(f"noisy_targets is label noise; this injection is {self.kind!r}")
        if self.sigma == 0:
            return targets
        return label_transform(self.sigma, _generator(self.seed or 0, step, 1), num_classes)(targets)

    def after_step(self, model: torch.nn.Module, step: int) -> None:
        """In your own loop: what the injection does after ``optimizer.step()`` of step ``step`` (anti-PGD)."""
        after_step(self.kind, self.sigma, model, seed=self.seed or 0, step=step)


def _noise_plugins(ctx: BuildContext) -> list[Callback]:
    s = ctx.config.plugins.noise
    return [NoiseInjection(s.noise, s.noise_sigma)] if s.noise != "none" and s.noise_sigma > 0 else []


register_plugin_factory("noise", _noise_plugins, order=1)
