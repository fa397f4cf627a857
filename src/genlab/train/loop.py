"""``train(config)``: build a run from its settings and the registries, then run the one loop (:mod:`.fit`).

The mini-batch of step ``t`` is a pure function of ``(seed, t)`` (:func:`batch_indices`), so a run killed
at any point and restarted with the same command resumes bit for bit (see :mod:`genlab.train.session`). The
features a config asks for (SGLD accounting, noise injection, sharpness tracking, subspace training,
progressive quantization, TensorBoard) come from the plugin registry (:mod:`genlab.train.plugins`); this
module names none of them.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from genlab.config import TrainConfig
from genlab.errors import CheckpointError, ConfigError
from genlab.train import distill as _distill  # noqa: F401  (registers the distillation plugin)
from genlab.train import augment as _augment  # noqa: F401  (registers the augmentation plugin)
from genlab.train import noise_injection as _noise_injection  # noqa: F401  (registers the noise plugin)
from genlab.train import tensorboard as _tensorboard  # noqa: F401  (registers the TensorBoard plugin)
from genlab.train.callbacks import Callback
from genlab.train.run_dir import open_run_dir
from genlab.train.session import Schedule, Session, StopOnSignals, TrainingInterrupted, epoch_permutation
from genlab.train.optimizers import OPTIMIZERS, build_optimizer
from genlab.train.plugins import BuildContext, plugins_for
from genlab.train.run import (Run, assemble_run, check_same_upstream, data_fingerprint, load_data, make_model,
                              make_objectives, upstream_weights,
                              read_run_config, resolve_device)
from genlab.train.run_dir import RunDir

__all__ = ["train", "batch_indices", "steps_per_epoch", "total_steps", "scheduled_lr", "StopOnSignals",
           "TrainingInterrupted"]


def steps_per_epoch(config: TrainConfig, n: int) -> int:
    """Optimizer steps in one epoch: 1 for full-batch optimizers, else ``ceil(n / batch_size)``."""
    return 1 if OPTIMIZERS[config.optimizer.name].full_batch else math.ceil(n / config.run.batch_size)


def total_steps(config: TrainConfig, n: int) -> int:
    """Length of the run in steps (``steps``, or ``epochs`` x steps per epoch; default 10 epochs)."""
    if config.run.steps is not None:
        return config.run.steps
    return (config.run.epochs if config.run.epochs is not None else 10) * steps_per_epoch(config, n)


def scheduled_lr(config: TrainConfig, step: int, total: int) -> float:
    """The learning rate of step ``step`` (0-based) of ``total``: ``lr`` or its cosine decay to 0."""
    return config.optimizer.lr * Schedule(total, 1, lr_schedule=config.optimizer.lr_schedule).lr_factor(step)


def batch_indices(config: TrainConfig, n: int, step: int) -> torch.Tensor | None:
    """Indices of the examples used by step ``step`` (0-based); ``None`` for full-batch steps."""
    if OPTIMIZERS[config.optimizer.name].full_batch:
        return None
    epoch, pos = divmod(step, steps_per_epoch(config, n))
    perm = epoch_permutation(config.run.seed, epoch, n)
    return perm[pos * config.run.batch_size:(pos + 1) * config.run.batch_size]


def _check_resumable(rd: RunDir, config: TrainConfig) -> None:
    old = read_run_config(rd.path)
    new, was = config.flat(), old.flat()
    new_fields, old_fields = config.trajectory_fields(), old.trajectory_fields()
    diff = [k for k in new_fields if new_fields[k] != old_fields.get(k)]
    if config.optimizer.lr_schedule != "constant":  # the schedule depends on the length: lengthening changes it
        diff += [k for k in ("epochs", "steps") if new[k] != was[k]]
    if diff:
        k = diff[0]
        raise CheckpointError(
            f"{rd.path} holds a run with other settings ({k}: {was.get(k)!r} there, {new[k]!r} now);"
            f" use a new --out, or --overwrite to discard it")


def train(config: TrainConfig, out: str | Path, *, callbacks: list[Callback] | None = None, quiet: bool = False,
          overwrite: bool = False) -> Run:
    """Train the model a config describes, writing the run directory ``out``; returns the :class:`Run`.

    If ``out`` already holds a run with the same trajectory-defining settings, it
    resumes from its checkpoint (or, if it completed, extends it when ``epochs``
    or ``steps`` grew, and otherwise does nothing). ``overwrite`` discards it.

    Args:
        config: the run's settings.
        out: the run directory (created if needed).
        callbacks: extra plugins (:class:`Callback` objects), run after the registered ones (and before
            TensorBoard), each checkpointed under its ``state_key``.
        quiet: no progress bar or progress lines.
        overwrite: delete a run with other settings found in ``out`` instead of refusing.

    Raises:
        DivergenceError: a non-finite loss or parameters; the last good checkpoint is kept.
        TrainingInterrupted: Ctrl-C; a checkpoint of the last completed step was saved.
        CheckpointError: ``out`` holds a run with other settings or data, or a corrupt checkpoint.
    """
    with open_run_dir(out, overwrite) as rd:  # held by this process until the run stops
        return _train_in(rd, config, callbacks, quiet)


def _train_in(rd: RunDir, config: TrainConfig, callbacks: list[Callback] | None, quiet: bool) -> Run:
    upstream = upstream_weights(config)
    if rd.config.is_file():
        _check_resumable(rd, config)
        if rd.checkpoint.is_file():
            check_same_upstream(rd, upstream)
    device = resolve_device(config.run.device)
    data = load_data(config)
    noise = config.plugins.noise
    if noise.noise == "label" and data.task == "classification" and noise.noise_sigma > 1:
        raise ConfigError(f"noise_sigma is the label flip probability for the classification dataset "
                          f"{config.data.name} and must be <= 1 (got {noise.noise_sigma})")
    model = make_model(config, data, device)
    optimizer = build_optimizer(model.parameters(), config, len(data.x_train))
    objective, test_objective = make_objectives(config, data, model)
    n = objective.n
    spec = OPTIMIZERS[config.optimizer.name]
    schedule = Schedule(total_steps=total_steps(config, n), steps_per_epoch=steps_per_epoch(config, n),
                        seed=config.run.seed, full_batch=spec.full_batch,
                        batch_size=None if spec.full_batch else config.run.batch_size,
                        lr_schedule=config.optimizer.lr_schedule, eval_every=config.run.eval_every,
                        checkpoint_every=config.run.checkpoint_every)
    ctx = BuildContext(config=config, data=data, model=model, objective=objective, test_objective=test_objective,
                       run_dir=rd)
    registered = plugins_for(ctx)
    last = [p for p in registered if p.key == "tensorboard"]  # after the caller's callbacks
    plugins = [p for p in registered if p.key != "tensorboard"] + list(callbacks or []) + last
    session = Session(objective, optimizer, rd, schedule, test=test_objective, plugins=plugins, quiet=quiet,
                      record=config.model_dump(), config=config, fingerprint=data_fingerprint(data),
                      base_lrs=[config.optimizer.lr] * len(optimizer.param_groups),
                      env_extra={"upstream_weights": upstream},
                      describe=f"{config.data.name} ({n} train) {config.model.name} "
                               f"({objective.num_params():,} params) {config.optimizer.name} "
                               f"lr={config.optimizer.lr}, ")
    session.run_or_skip()
    # the trained model and data are in memory already: no second read of the dataset
    return assemble_run(rd, config, model, data)
