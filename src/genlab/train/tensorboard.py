"""TensorBoard event files next to ``metrics.jsonl`` (``genlab train --tensorboard``).

Every record the loop writes to ``metrics.jsonl`` is also written as scalars to ``RUN/tensorboard/``, under the
same names (lists such as ``eigenvalues`` as ``eigenvalues/0``, ``eigenvalues/1``, ...), at the record's step.
On resume the writer purges events after the checkpoint's step, so a resumed run logs no step twice (as
``metrics.jsonl``). Needs the optional ``tensorboard`` package (``pip install 'genlab[tensorboard]'``).
"""

from __future__ import annotations

import math
from typing import Any

from genlab.errors import ConfigError
from genlab.train.callbacks import Callback, TrainState
from genlab.train.plugins import BuildContext, register_plugin_factory


def tensorboard_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of one metrics record as TensorBoard tags (lists flattened to ``name/i``)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key == "step":
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for i, v in enumerate(values):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[f"{key}/{i}" if isinstance(value, (list, tuple)) else key] = float(v)
    return out


class TensorBoardLogger(Callback):
    """Writes each step's metrics to TensorBoard event files; runs after every other callback."""

    state_key = "tensorboard"
    resumable_settings = ("log_dir",)

    def __init__(self, log_dir):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("tensorboard: needs the tensorboard package; install it with "
                              "pip install 'genlab[tensorboard]' (or train without --tensorboard)") from None
        self._writer_class = SummaryWriter
        self.log_dir = str(log_dir)
        self.writer = None

    def on_train_start(self, state: TrainState, resumed: bool) -> None:
        # purge_step: events a killed run wrote after its last checkpoint (step) are dropped, as metrics.jsonl does
        self.writer = self._writer_class(self.log_dir, purge_step=state.step + 1 if resumed else None)
        self._write(state)

    def _write(self, state: TrainState) -> None:
        if not state.metrics:
            return
        for tag, value in tensorboard_scalars({"epoch": state.epoch, **state.metrics}).items():
            self.writer.add_scalar(tag, value, global_step=state.step)
        self.writer.flush()

    def on_step_end(self, state: TrainState) -> None:
        self._write(state)

    def on_train_end(self, state: TrainState) -> None:
        self._write(state)
        self.close()

    def close(self) -> None:
        """Flush and close the event file (also when a run stops early)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _tensorboard_plugins(ctx: BuildContext) -> list[Callback]:
    return [TensorBoardLogger(ctx.run_dir.path / "tensorboard")] if ctx.config.plugins.logging.tensorboard else []


# last (order 100, after the caller's callbacks too), so it sees every number the others added to the record
register_plugin_factory("tensorboard", _tensorboard_plugins, order=100)
