"""Training callbacks: small objects the loop calls at fixed points.

A callback adds numbers to ``state.metrics`` for the current step; the loop
writes them as one record of ``metrics.jsonl`` after all callbacks have run, and
then checkpoints. A callback with state of its own returns it from
``state_dict`` (JSON-able) so it is checkpointed and restored on resume.
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

    config: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    objective: Objective
    test_objective: Objective
    heldout_source: str = ""  # SGLD: where its held-out points come from (genlab.train.loop.heldout_objective)
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
    """Base class; override what you need. ``every`` is in steps."""

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

    def __init__(self, every: int):
        self.every = every
        self._batch_losses: list[float] = []

    def _evaluate(self, state: TrainState) -> None:
        train, test = state.objective.evaluate(), state.test_objective.evaluate()
        state.metrics.update({
            "train_loss": train["loss"], "train_accuracy": train["accuracy"],
            "test_loss": test["loss"], "test_accuracy": test["accuracy"],
            "lr": state.optimizer.param_groups[0]["lr"],
        })
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
