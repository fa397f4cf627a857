"""Training: one open loop (``fit``) for every optimizer and plugin, ``train(config)`` on top, run directories,
checkpoints and resume."""

from genlab.train.run import Run, load_run
from genlab.train.callbacks import Callback, EvalCallback, TrainState
from genlab.train.fit import FitResult, fit
from genlab.train.loop import TrainingInterrupted, batch_indices, steps_per_epoch, total_steps, train
from genlab.train.augment import Augmentation
from genlab.train.noise_injection import NoiseInjection
from genlab.train.plugins import register_model_transform, register_plugin_factory
from genlab.train.optimizers import OPTIMIZERS, OptimizerSpec, build_optimizer, register_optimizer
from genlab.train.run_dir import RunDir

__all__ = ["Run", "load_run", "Callback", "EvalCallback", "TrainState", "TrainingInterrupted", "batch_indices", "steps_per_epoch",
           "total_steps", "train", "fit", "FitResult", "Augmentation", "NoiseInjection",
           "register_plugin_factory", "register_model_transform", "OPTIMIZERS", "OptimizerSpec", "build_optimizer", "register_optimizer", "RunDir"]
