"""Optimizers by name: the registry the training loop and the CLI read.

Each entry builds a ``torch.optim.Optimizer`` from the model's parameters and the
run's :class:`~genlab.config.TrainConfig`. ``full_batch`` says whether a step uses
the whole training set (GD) or a mini-batch. Later capabilities (SGLD, IVON, ...)
register themselves here with :func:`register_optimizer`, so the loop, the
checkpointing and the CLI need no change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class OptimizerSpec:
    """How to build one named optimizer."""

    name: str
    description: str
    full_batch: bool
    build: Callable[..., torch.optim.Optimizer]
    uses_train_size: bool = False  # build(params, config, n_train) instead of build(params, config)


OPTIMIZERS: dict[str, OptimizerSpec] = {}


def register_optimizer(spec: OptimizerSpec) -> OptimizerSpec:
    """Add an optimizer to the registry (names are unique)."""
    if spec.name in OPTIMIZERS:
        raise ValueError(f"optimizer {spec.name!r} is registered already")
    OPTIMIZERS[spec.name] = spec
    return spec


def build_optimizer(params: Iterable[torch.nn.Parameter], config, n_train: int | None = None
                    ) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer``, built from ``config``'s settings (and the training-set size,
    for the optimizers that default to it)."""
    spec = OPTIMIZERS[config.optimizer]
    if spec.uses_train_size:
        return spec.build(params, config, n_train)
    return spec.build(params, config)


def _sgd(params, c):
    return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)


register_optimizer(OptimizerSpec("gd", "full-batch gradient descent (optional heavy-ball momentum)", True, _sgd))
register_optimizer(OptimizerSpec("sgd", "mini-batch SGD (optional momentum, weight decay)", False, _sgd))
register_optimizer(OptimizerSpec(
    "adam", "Adam on mini-batches (momentum is beta1 when given, else 0.9)", False,
    lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay,
                                       betas=(c.momentum or 0.9, 0.999))))


def _sgld(params, c):
    from genlab.optim.sgld import SGLD

    return SGLD(params, lr=c.lr, noise=c.sgld_noise, noise_trace=c.noise_trace, floor=c.noise_floor, seed=c.seed,
                complete=c.sgld_completion)


register_optimizer(OptimizerSpec("sgld", "mini-batch SGLD with structured noise (--sgld-noise, --noise-trace)",
                                 False, _sgld))
register_optimizer(OptimizerSpec("gld", "full-batch gradient descent plus SGLD noise (C from a batch of "
                                 "--batch-size points)", True, _sgld))


def _ivon(params, c, n_train):
    import math

    from genlab.optim.ivon import IVON

    ess = c.ess if c.ess is not None else n_train
    if ess is None:
        raise ValueError("IVON needs ess (or the training-set size to default to)")
    return IVON(params, lr=c.lr, ess=ess, hess_init=c.hess_init, beta1=c.ivon_beta1, beta2=c.ivon_beta2,
                weight_decay=c.weight_decay, mc_samples=c.mc_samples,
                clip_radius=c.ivon_clip if c.ivon_clip is not None else math.inf, posterior=c.posterior, dof=c.dof,
                seed=c.seed)


def _vgd(params, c):
    from genlab.optim.ivon import VariationalGD

    return VariationalGD(params, lr=c.lr, sigma=c.vgd_sigma, mc_samples=c.mc_samples, posterior=c.posterior,
                         dof=c.dof, seed=c.seed)


register_optimizer(OptimizerSpec("ivon", "IVON variational learning on mini-batches (--ess, --hess-init, "
                                 "--mc-samples; full batch with --batch-size >= n)", False, _ivon,
                                 uses_train_size=True))
register_optimizer(OptimizerSpec("vgd", "full-batch variational GD: mean gradient at --mc-samples draws of "
                                 "N(w, --vgd-sigma^2)", True, _vgd))
