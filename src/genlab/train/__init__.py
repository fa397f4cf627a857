"""Training: one loop for every optimizer, callbacks, run directories, checkpoints and resume."""

from genlab.train.run import Run, load_run
from genlab.train.callbacks import Callback, EvalCallback, TrainState
from genlab.train.loop import TrainingInterrupted, batch_indices, steps_per_epoch, total_steps, train
from genlab.train.optimizers import OPTIMIZERS, OptimizerSpec, build_optimizer, register_optimizer
from genlab.train.run_dir import RunDir

__all__ = ["Run", "load_run", "Callback", "EvalCallback", "TrainState", "TrainingInterrupted", "batch_indices", "steps_per_epoch",
           "total_steps", "train", "OPTIMIZERS", "OptimizerSpec", "build_optimizer", "register_optimizer", "RunDir"]
