"""Training plugins (callbacks): small objects the loop calls at fixed points, around the gradient, the
optimizer step and the summary.

Every feature of a run beyond plain optimisation is one: evaluation, noise injection, SGLD's bound
accounting, sharpness tracking, progressive quantization, TensorBoard. A plugin owns its settings (its
constructor's arguments) and its state: ``state_dict`` (JSON-able) is checkpointed under the plugin's
``state_key`` (default: its class name) and restored by that key on resume, never by position, so adding or
removing a plugin when resuming cannot hand one plugin another's state.

The hooks of one step, in order::

    compute = plugin.wrap_gradient(state, compute)  # each plugin may wrap the gradient computation
    kwargs  = plugin.step_kwargs(state)             # extra keyword arguments for optimizer.step
    optimizer.step(...)                             # with the closure for closure optimizers (IVON, VGD)
    plugin.after_optimizer_step(state)              # state.step is still the step just taken (0-based)
    state.step += 1
    plugin.on_step_end(state)                       # add numbers to state.metrics; one metrics record
    ... at the end: plugin.on_train_end(state); plugin.summary(state) -> keys of summary.json

A plugin adds numbers to ``state.metrics`` for the current step; the loop writes them as one record of
``metrics.jsonl`` after all plugins have run, and then checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from genlab.objective import Objective


@dataclass
class TrainState:
    """What callbacks see: the live run, and the metrics record being built for this step."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    objective: Objective
    test_objective: Objective | None = None
    config: Any = None        # the TrainConfig when the run came from train(config); None from fit()
    seed: int = 0             # the run's seed (plugins key their random draws on (seed, step))
    batch_size: int | None = None  # mini-batch size (None: full batch or the loader's batches)
    indices: torch.Tensor | None = None  # this step's example indices (in-memory data; None: full batch)
    batch: Any = None         # this step's batch when it came from a loader
    step: int = 0
    total_steps: int = 0
    steps_per_epoch: int = 1
    batch_loss: float = math.nan
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch(self) -> float:
        """Epochs completed (fractional for mini-batch training)."""
        return self.step / self.steps_per_epoch


class Callback:
    """Base class of training plugins; override what you need (module docstring). ``every`` is in steps."""

    #: key of this plugin's state in checkpoints (default: the class name); unique within a run
    state_key: str | None = None

    @property
    def key(self) -> str:
        """Where this plugin's state is checkpointed."""
        return self.state_key or type(self).__name__

    def on_init(self, state: TrainState) -> None:
        """Called once at the start of a fresh run (not on resume), before anything is evaluated or saved:
        initialise weights here."""

    def wrap_gradient(self, state: TrainState, compute):
        """Return ``compute`` or a wrapper of it. ``compute(target_transform=None, input_transform=None) ->
        loss`` accumulates the step's gradient into ``.grad``; the wrapper may transform targets (label noise),
        inputs (augmentation, the innermost wrapper) or weights (DropConnect); a wrapper passes on the keyword
        arguments it does not use. Called once per step; the wrapped function may be called several times
        (closure optimizers evaluate several posterior samples)."""
        return compute

    def step_kwargs(self, state: TrainState) -> dict[str, Any]:
        """Extra keyword arguments for ``optimizer.step`` this step (SGLD's noise statistics)."""
        return {}

    def after_optimizer_step(self, state: TrainState) -> None:
        """Called right after ``optimizer.step``, before the parameters are checked (``state.step`` is the
        0-based index of the step just taken)."""

    def summary(self, state: TrainState) -> dict[str, Any]:
        """Keys this plugin adds to ``summary.json`` when the run stops."""
        return {}

    def on_train_start(self, state: TrainState, resumed: bool) -> None:
        """Called once before the first step (and after a resume)."""

    def on_step_end(self, state: TrainState) -> None:
        """Called after each optimizer step; ``state.step`` counts completed steps."""

    def on_train_end(self, state: TrainState) -> None:
        """Called once after the last step."""

    def close(self) -> None:
        """Called once when the run stops for any reason (complete, interrupted, diverged): release files."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state to checkpoint (default: none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class EvalCallback(Callback):
    """Every ``every`` steps (and at step 0 and the last step): full train and test loss and accuracy.

    Also records the mean mini-batch loss since the previous evaluation, and an optimizer's running
    information estimate (SGLD's ``info``) as ``sgld_information`` when it has one.
    """

    state_key = "eval"

    def __init__(self, every: int):
        self.every = every
        self._batch_losses: list[float] = []

    def _evaluate(self, state: TrainState) -> None:
        train = state.objective.evaluate()
        state.metrics.update({"train_loss": train["loss"], "train_accuracy": train["accuracy"]})
        if state.test_objective is not None:
            test = state.test_objective.evaluate()
            state.metrics.update({"test_loss": test["loss"], "test_accuracy": test["accuracy"]})
        state.metrics["lr"] = state.optimizer.param_groups[0]["lr"]
        info = getattr(state.optimizer, "info", None)
        if info is not None:
            state.metrics["sgld_information"] = info
        if self._batch_losses:
            state.metrics["batch_loss"] = sum(self._batch_losses) / len(self._batch_losses)
        self._batch_losses = []

    def on_train_start(self, state: TrainState, resumed: bool) -> None:
        if not resumed:
            self._evaluate(state)

    def on_step_end(self, state: TrainState) -> None:
        self._batch_losses.append(state.batch_loss)
        if state.step % self.every == 0 or state.step == state.total_steps:
            self._evaluate(state)

    def state_dict(self) -> dict[str, Any]:
        return {"batch_losses": list(self._batch_losses)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._batch_losses = list(state.get("batch_losses", []))
