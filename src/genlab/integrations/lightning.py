"""genlab in a PyTorch Lightning ``Trainer`` (``pip install 'genlab[lightning]'``).

:class:`SharpnessCallback` is a Lightning callback around :class:`~genlab.curvature.SharpnessTracker`: every
``every`` optimizer steps it measures the top Hessian eigenvalue of the full training loss (on the Objective
you give it, a fixed-order loader over your training data), logs ``genlab/sharpness`` and
``genlab/stability_threshold`` through the module's logger, keeps every measurement in ``history``, and saves
its state in Lightning checkpoints under its own ``state_key``. IVON and variational GD work as Lightning
optimizers as they are (Lightning passes its closure to ``optimizer.step``); label noise goes into your
``training_step`` with :meth:`genlab.train.NoiseInjection.noisy_targets`.

Example::

    trainer = pl.Trainer(max_epochs=20, callbacks=[SharpnessCallback(Objective(model, loss, fixed_loader), 20)])
    trainer.fit(module, train_loader)
"""

from __future__ import annotations

from typing import Any

from genlab.curvature.tracking import SharpnessTracker
from genlab.errors import ConfigError
from genlab.objective import Objective

try:
    import pytorch_lightning as pl
except ImportError:  # the extra is optional: one line saying how to get it
    raise ConfigError("genlab.integrations.lightning needs PyTorch Lightning: pip install 'genlab[lightning]'") \
        from None


class SharpnessCallback(pl.Callback):
    """Sharpness tracking in a Lightning ``Trainer``.

    Args:
        objective: the model (the LightningModule's network), loss and a fixed-order pass over the training data.
        every: optimizer steps between measurements.
        **tracker_options: passed to :class:`~genlab.curvature.SharpnessTracker` (``top_k``, ``tol``, ...).
    """

    def __init__(self, objective: Objective, every: int, **tracker_options: Any):
        super().__init__()
        self.tracker = SharpnessTracker(objective, every=every, **tracker_options)

    @property
    def state_key(self) -> str:
        return "genlab-sharpness"

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every measurement taken so far (``step``, ``sharpness``, ``stability_threshold``, ...)."""
        return self.tracker.history

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        record = self.tracker.after_step(trainer.optimizers[0], step=trainer.global_step)
        if record is not None:
            scalars = {f"genlab/{k}": float(v) for k, v in record.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
            pl_module.log_dict(scalars, on_step=True, on_epoch=False)

    def state_dict(self) -> dict[str, Any]:
        return {"tracker": self.tracker.state_dict(), "history": self.tracker.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.tracker.load_state_dict(state_dict.get("tracker", {}))
        self.tracker.history = list(state_dict.get("history", []))
