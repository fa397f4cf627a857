"""Which plugins and model transforms a :class:`~genlab.config.TrainConfig` asks for: registries filled from above.

The training loop knows no feature by name. Each feature module registers a *plugin factory*
``factory(ctx) -> list[Callback]`` (and, for features that change the model, a *model transform*
``transform(config, model) -> model``) when it is imported; :func:`genlab.registry.load_extensions` imports
them all (genlab's own through its ``genlab.extensions`` entry points) before the registry is read.
``train(config)`` then asks :func:`plugins_for` for the plugins of a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from genlab.registry import load_extensions
from genlab.train.callbacks import Callback


@dataclass
class BuildContext:
    """What a plugin factory may read: the run's settings and what was built from them."""

    config: Any
    data: Any                       # genlab.data.Dataset
    model: torch.nn.Module
    objective: Any                  # training-set Objective
    test_objective: Any
    run_dir: Any = None             # genlab.train.run_dir.RunDir


PluginFactory = Callable[[BuildContext], "list[Callback] | None"]
_FACTORIES: list[tuple[int, str, PluginFactory]] = []
_TRANSFORMS: list[tuple[int, str, Callable]] = []


def register_plugin_factory(name: str, factory: PluginFactory, order: int = 50) -> None:
    """Register ``factory(ctx) -> plugins`` under ``name``; plugins run in ascending ``order`` (evaluation is
    first, TensorBoard last, user callbacks after the registered ones). Re-registering a name replaces it."""
    _FACTORIES[:] = [f for f in _FACTORIES if f[1] != name]
    _FACTORIES.append((order, name, factory))
    _FACTORIES.sort(key=lambda f: (f[0], f[1]))


def register_model_transform(name: str, transform: Callable, order: int = 50) -> None:
    """Register ``transform(config, model) -> model`` (applied after the model is built, before it is moved)."""
    _TRANSFORMS[:] = [t for t in _TRANSFORMS if t[1] != name]
    _TRANSFORMS.append((order, name, transform))
    _TRANSFORMS.sort(key=lambda t: (t[0], t[1]))


def plugins_for(ctx: BuildContext) -> list[Callback]:
    """The plugins the run's settings ask for, from every registered factory, in order."""
    load_extensions()
    out: list[Callback] = []
    for _, _, factory in _FACTORIES:
        out.extend(factory(ctx) or [])
    return out


def transform_model(config: Any, model: torch.nn.Module) -> torch.nn.Module:
    """Apply every registered model transform (e.g. subspace training) the settings ask for."""
    load_extensions()
    for _, _, transform in _TRANSFORMS:
        model = transform(config, model)
    return model
