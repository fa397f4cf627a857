"""Knowledge distillation (``--distill-from``): train on a given network's predictions instead of the labels.

The targets of every training example become the given network's ("the original's") class probabilities at
temperature ``T``, ``softmax(f_original(x) / T)``, and the loss is the run's cross-entropy against them (Hinton,
Vinyals & Dean 2015; matching ``softmax(z / T)`` with the student's own logits learns ``z / T`` up to scale, the
same predictions). Evaluation still scores the true labels.

Why genlab has it: ``genlab bound --from-model`` certifies a network trained the ordinary way by fitting a
compressible predictor (a quantized subspace around the seeded initialisation) *to that network*; the bound is
then on the compressed predictor, and it stays valid whatever targets chose it, since an Occam bound's prior is
fixed before the data and holds for every message at once.

The original's weights are a ``.safetensors`` file (or a run directory's ``model.safetensors``) of the run's
own architecture; its probabilities are computed once, at the start of training, on the in-memory training
inputs (no randomness: a resumed run recomputes the same ones).
"""

from __future__ import annotations

from pathlib import Path

import torch

from genlab.errors import ConfigError
from genlab.train.callbacks import Callback, TrainState
from genlab.train.plugins import BuildContext, register_plugin_factory


def original_weights_file(path: str | Path) -> Path:
    """The weights file ``path`` names: itself, or a run directory's final ``model.safetensors``.

    Raises:
        ConfigError: nothing there, or a run that has not finished.
    """
    from genlab.train.run_dir import RunDir

    path = Path(path)
    if path.is_dir():
        rd = RunDir(path)
        if not rd.model.is_file():
            raise ConfigError(f"{path}: no finished run there (no {rd.model.name}); give a complete run directory "
                              f"or a .safetensors file")
        return rd.model
    if not path.is_file():
        raise ConfigError(f"{path}: no such file or run directory (a .safetensors file of the network's weights, "
                          f"or a run directory, is allowed)")
    return path


def load_original(path: str | Path, build) -> torch.nn.Module:
    """The original network: ``build()`` (the architecture) with the weights of ``path``, in eval mode.

    Raises:
        ConfigError: the file is not a weights file, or its tensors do not fit the architecture.
    """
    from genlab.errors import CheckpointError
    from genlab.train.checkpoint import load_state_dict

    file = original_weights_file(path)
    try:
        state = load_state_dict(file)
    except CheckpointError as err:
        raise ConfigError(f"{file}: not a weights file ({err})") from None
    model = build()
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or extra or wrong:
        what = (f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra
                else f"{wrong[0]} has shape {list(state[wrong[0]].shape)}, the model {list(own[wrong[0]].shape)}")
        raise ConfigError(f"{file}: its weights do not fit the model ({what}); give the same --model and shape "
                          f"flags the network was built with")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model.eval()


def soft_targets(model: torch.nn.Module, x: torch.Tensor, temperature: float, chunk: int = 2000) -> torch.Tensor:
    """``softmax(model(x) / T)`` for every row of ``x``, without gradients, in chunks."""
    with torch.no_grad():
        return torch.cat([torch.softmax(model(x[i: i + chunk]) / temperature, dim=1) for i in range(0, len(x), chunk)])


class Distillation(Callback):
    """Training plugin: each step's targets are the original network's probabilities for the step's examples.

    Args:
        original: the original network (eval mode) or ``None`` with ``targets`` given.
        temperature: ``T`` of ``softmax(f / T)``.
        source: where the original came from (recorded in the plugin's settings).
        targets: the soft targets of every training example (computed from ``original`` otherwise).
    """

    state_key = "distillation"

    def __init__(self, original: torch.nn.Module | None, temperature: float, source: str = "",
                 targets: torch.Tensor | None = None):
        self.original, self.temperature, self.source, self.targets = original, float(temperature), source, targets

    def settings(self) -> dict:
        return {"from": self.source, "temperature": self.temperature}

    def on_train_start(self, state: TrainState, resumed: bool) -> None:
        if self.targets is None:
            x = getattr(state.objective.data, "inputs", None)
            if not isinstance(x, torch.Tensor):
                raise ConfigError("distillation needs the training inputs in memory as one tensor (a registered "
                                  "dataset)")
            original = self.original.to(device=x.device, dtype=x.dtype)
            self.targets = soft_targets(original, x, self.temperature)

    def wrap_gradient(self, state: TrainState, compute):
        if state.batch is not None:
            raise ConfigError("distillation needs in-memory data: the step's batch came from a data loader")
        rows = torch.arange(len(self.targets)) if state.indices is None else state.indices.cpu()
        targets = self.targets

        def with_original(target_transform=None, **rest):   # rest: input_transform (augmentation) passed on
            offset = [0]   # the Objective passes the step's chunks in order: consume the rows as they come

            def replace(y):
                start = offset[0]
                offset[0] += len(y)
                return targets[rows[start: offset[0]].to(targets.device)].to(y.device)
            return compute(target_transform=replace, **rest)
        return with_original


def _distill_plugins(ctx: BuildContext) -> list[Callback]:
    s = ctx.config.plugins.distill
    if s.distill_from is None:
        return []
    if ctx.data.task != "classification":
        raise ConfigError(f"distill_from: distillation matches class probabilities; {ctx.config.data.name} is a "
                          f"regression dataset")
    if ctx.config.plugins.noise.noise == "label":
        raise ConfigError("distill_from and --noise label both replace the targets; use one of them")
    from genlab.models import build_model

    m, d = ctx.config.model, ctx.data
    with torch.random.fork_rng(devices=[]):   # building draws an initialisation: leave the run's stream alone
        original = load_original(s.distill_from, lambda: build_model(
            m.name, d.input_shape, d.output_dim, width=m.width, depth=m.depth, dropout=m.dropout,
            activation=m.activation, batchnorm=m.batchnorm, **m.model_options))
    return [Distillation(original, s.distill_temperature, source=str(s.distill_from))]


register_plugin_factory("distillation", _distill_plugins, order=2)
