"""Optimizers by name: the registry the training loop and the CLI read.

Each entry builds a ``torch.optim.Optimizer`` from the model's parameters and the
run's :class:`~genlab.config.TrainConfig` (its ``optimizer`` section is an instance of the entry's
``settings`` class, :mod:`genlab.settings.optimizers`). ``full_batch`` says whether a step uses
the whole training set (GD) or a mini-batch. The noisy optimizers (SGLD, IVON, VGD)
register themselves here from ``genlab.optim`` with :func:`register_optimizer` when
the extensions are loaded (:mod:`genlab.registry`), so the loop, the checkpointing
and the CLI know none of them by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from genlab.registry import Registry
from genlab.settings.optimizers import OPTIMIZER_SETTINGS, AdamSettings, OptimizerSettings, SGDSettings


@dataclass(frozen=True)
class OptimizerSpec:
    """How to build one named optimizer."""

    name: str
    description: str
    full_batch: bool
    build: Callable[..., torch.optim.Optimizer]
    uses_train_size: bool = False  # build(params, config, n_train) instead of build(params, config)
    #: its settings (a subclass of OptimizerSettings): they exist, and are validated, only when it is chosen
    settings: type[OptimizerSettings] = OptimizerSettings


OPTIMIZERS: dict[str, OptimizerSpec] = Registry()


def register_optimizer(spec: OptimizerSpec) -> OptimizerSpec:
    """Add an optimizer to the registry (names are unique)."""
    if dict.__contains__(OPTIMIZERS, spec.name):  # no extension loading while extensions register
        raise ValueError(f"optimizer {spec.name!r} is registered already")
    if not (isinstance(spec.settings, type) and issubclass(spec.settings, OptimizerSettings)):
        raise TypeError(f"optimizer {spec.name!r}: settings must be a subclass of OptimizerSettings")
    dict.__setitem__(OPTIMIZERS, spec.name, spec)
    OPTIMIZER_SETTINGS[spec.name] = spec.settings
    return spec


def build_optimizer(params: Iterable[torch.nn.Parameter], config, n_train: int | None = None
                    ) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer.name``, built from ``config``'s settings (and the training-set size,
    for the optimizers that default to it)."""
    spec = OPTIMIZERS[config.optimizer.name]
    if spec.uses_train_size:
        return spec.build(params, config, n_train)
    return spec.build(params, config)


def _sgd(params, c):
    o = c.optimizer
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def _adam(params, c):
    o = c.optimizer
    return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay, betas=(o.momentum, 0.999))


register_optimizer(OptimizerSpec("gd", "full-batch gradient descent (optional heavy-ball momentum)", True, _sgd,
                                 settings=SGDSettings))
register_optimizer(OptimizerSpec("sgd", "mini-batch SGD (optional momentum, weight decay)", False, _sgd,
                                 settings=SGDSettings))
register_optimizer(OptimizerSpec("adam", "Adam on mini-batches (--momentum is beta1, default 0.9)", False, _adam,
                                 settings=AdamSettings))
