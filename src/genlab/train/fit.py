"""The one training loop, open: ``fit(objective, optimizer, out, plugins=...)`` on any model, loss and data.

``fit`` records what defines the run (the optimizer's class and groups, the loop's settings, each plugin's
settings, the loss and the factories that rebuild model and data) in ``config.json``, refuses to resume a
directory holding another trajectory, and runs a :class:`~genlab.train.session.Session` (where the
determinism and resume rules are stated).

Example (a plain model, loss and loader)::

    from torch import nn
    from genlab.objective import Objective
    from genlab.train import fit
    obj = Objective(model, nn.CrossEntropyLoss(label_smoothing=0.1), train_loader)
    run = fit(obj, torch.optim.SGD(model.parameters(), lr=0.1), "runs/mine", epochs=5,
              test=Objective(model, "ce", test_loader))
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genlab.batching import take, tensor_bytes, tensors_of
from genlab.errors import CheckpointError, ConfigError, GenlabError
from genlab.jsonio import jsonable
from genlab.objective import Objective
from genlab.registry import factory_ref
from genlab.train.callbacks import Callback
from genlab.train.run_dir import RunDir, open_run_dir
from genlab.train.session import Schedule, Session


@dataclass
class FitResult:
    """What :func:`fit` returns: the run directory, its summary and the live objects."""

    path: Path
    summary: dict[str, Any]
    model: torch.nn.Module
    objective: Objective
    test_objective: Objective | None
    plugins: list[Callback] = field(default_factory=list)


def optimizer_settings(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's class and hyper-parameters per group (what defines its trajectory), JSON-able."""
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    return {"class": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}",
            "groups": jsonable(groups), "group_sizes": [len(g["params"]) for g in optimizer.param_groups]}


def fit(objective: Objective, optimizer: torch.optim.Optimizer, out: str | Path, *, steps: int | None = None,
        epochs: int | None = None, batch_size: int | None = None, full_batch: bool | None = None,
        test: Objective | None = None, plugins: Sequence[Callback] = (), seed: int = 0,
        eval_every: int | None = None, checkpoint_every: int | None = None, lr_schedule: str = "constant",
        factories: dict[str, Any] | None = None, quiet: bool = False, overwrite: bool = False) -> FitResult:
    """Train ``objective.model`` with ``optimizer`` and ``plugins``, writing the run directory ``out``.

    The same loop as ``genlab train``: evaluation every ``eval_every`` steps, checkpoints, exact resume
    (calling ``fit`` again with the same arguments and a freshly built model and optimizer resumes from the
    last checkpoint, or does nothing if the run is complete), divergence and Ctrl-C handling.

    Args:
        objective: model, loss and training data (tensors or a loader).
        optimizer: any ``torch.optim`` optimizer over the model's parameters (closure optimizers included).
        out: the run directory.
        steps, epochs: run length (one of them; default 10 epochs).
        batch_size: mini-batch size for in-memory data (examples drawn by a seeded permutation per epoch).
            With a loader the loader's own batches are the mini-batches.
        full_batch: every step on the whole training set (default: in-memory data without ``batch_size``).
        test: an Objective on held-out data, evaluated with the training set.
        plugins: training plugins (:class:`~genlab.train.callbacks.Callback`): noise injection, sharpness
            tracking, SGLD accounting, your own.
        seed: seeds the batch order, the plugins' draws and the dropout stream (not the model's init).
        lr_schedule: ``"constant"`` or ``"cosine"`` (decay of every group's learning rate to 0).
        factories: how to rebuild the run later, so that ``genlab.load_run`` / ``genlab curvature`` /
            ``genlab report`` work on it: ``{"model": fn or (fn, kwargs), "data": fn or (fn, kwargs)}`` with
            module-level functions; ``data`` returns ``(train_data, test_data)`` as ``Objective`` takes them.
            The loss is recorded from ``objective.loss_fn.spec()`` (ready and registered losses).
        quiet: no progress output.
        overwrite: discard a different run found in ``out``.

    Raises:
        DivergenceError, TrainingInterrupted, CheckpointError (as :func:`genlab.train.train`).
    """
    if steps is not None and epochs is not None:
        raise ConfigError("fit: give steps or epochs, not both")
    if lr_schedule not in ("constant", "cosine"):
        raise ConfigError(f"lr_schedule: {lr_schedule!r}; allowed: constant, cosine")
    if full_batch is None:
        full_batch = objective.in_memory and batch_size is None
    if not full_batch and objective.in_memory and batch_size is None:
        raise ConfigError("fit: mini-batch training on in-memory data needs batch_size")
    if not full_batch and not objective.in_memory and batch_size is not None:
        raise ConfigError("fit: with a data loader the loader's batches are the mini-batches; leave batch_size "
                          "unset (or full_batch=True)")
    if full_batch:
        per_epoch = 1
    elif objective.in_memory:
        per_epoch = math.ceil(objective.n / batch_size)
    else:  # the loader's length when it has one (a DataLoader does), else one pass to count
        loader = objective.data.loader
        per_epoch = len(loader) if hasattr(loader, "__len__") else sum(1 for _ in loader)
    total = steps if steps is not None else (epochs if epochs is not None else 10) * per_epoch
    schedule = Schedule(total_steps=total, steps_per_epoch=per_epoch, seed=seed, full_batch=full_batch,
                        batch_size=batch_size, lr_schedule=lr_schedule, eval_every=eval_every,
                        checkpoint_every=checkpoint_every)
    all_plugins = list(plugins)
    record = {
        "format": "genlab-fit-1",
        "optimizer": optimizer_settings(optimizer),
        "seed": seed, "full_batch": full_batch, "batch_size": batch_size, "lr_schedule": lr_schedule,
        "steps": steps, "epochs": epochs, "eval_every": eval_every, "checkpoint_every": checkpoint_every,
        "plugins": {p.key: plugin_settings(p) for p in all_plugins},
        "objective": {"batch_size": objective.batch_size, "output": objective.output
                      if isinstance(objective.output, (str, int, type(None))) else None,
                      "classification": objective.classification},
        "loss": _loss_spec(objective),
        "factories": _factory_record(factories),
    }
    with open_run_dir(out, overwrite) as rd:  # held by this process until the run stops
        if rd.config.is_file():
            _check_fit_resumable(rd, record, lr_schedule)
        fingerprint = data_digest(objective, test)
        session = Session(objective, optimizer, rd, schedule, test=test, plugins=all_plugins, quiet=quiet,
                          record=record, fingerprint=fingerprint,
                          describe=f"{type(objective.model).__name__} ({objective.num_params():,} params) "
                                   f"{type(optimizer).__name__}, ")
        session.run_or_skip()
        summary = rd.read_json(rd.summary) if rd.summary.is_file() else {}
    return FitResult(path=rd.path, summary=summary, model=objective.model, objective=objective,
                     test_objective=test, plugins=session.plugins)


def plugin_settings(plugin: Callback) -> dict[str, Any]:
    """A plugin's recorded settings: ``settings()`` when it has it, and which of them may change on resume."""
    get = getattr(plugin, "settings", None)
    settings = jsonable(get()) if callable(get) else {}
    return {"class": type(plugin).__qualname__, "settings": settings,
            "resumable": list(getattr(plugin, "resumable_settings", ()))}


# settings of fit() that may change when a run is resumed (lengthening it, evaluating more often)
_FIT_RESUMABLE = ("steps", "epochs", "eval_every", "checkpoint_every", "plugins", "factories", "objective")


def _check_fit_resumable(rd: RunDir, record: dict[str, Any], lr_schedule: str) -> None:
    try:
        old = rd.read_json(rd.config)
    except (ValueError, OSError) as err:
        raise CheckpointError(f"{rd.config} is corrupt ({err})") from None
    if old.get("format") != "genlab-fit-1":
        raise CheckpointError(f"{rd.path} holds a run of another kind (genlab train); use a new out directory")
    resumable = set(_FIT_RESUMABLE) - ({"steps", "epochs"} if lr_schedule != "constant" else set())
    diff = [k for k in record if k not in resumable and jsonable(record[k]) != old.get(k)]
    # a plugin's trajectory-defining settings must match; measuring plugins may come and go
    old_plugins, new_plugins = old.get("plugins", {}), record["plugins"]
    for key in set(old_plugins) | set(new_plugins):
        a, b = old_plugins.get(key), new_plugins.get(key)
        fixed = lambda p: {k: v for k, v in (p or {}).get("settings", {}).items()  # noqa: E731
                           if k not in (p or {}).get("resumable", [])}
        if (a is None) != (b is None) and fixed(a or b):
            diff.append(f"plugin {key}")
        elif a is not None and b is not None and fixed(a) != fixed(b):
            diff.append(f"plugin {key}")
    if diff:
        raise CheckpointError(f"{rd.path} holds a run with other settings ({diff[0]} differs); use a new out "
                              f"directory, or overwrite=True to discard it")


def _loss_spec(objective: Objective) -> dict[str, Any] | None:
    try:
        return objective.loss_fn.spec()
    except GenlabError:
        return None  # a user function: the run can be resumed by fit, not rebuilt from its directory


def _factory_record(factories: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for role, value in (factories or {}).items():
        if role not in ("model", "data", "loss"):
            raise ConfigError(f"factories: unknown role {role!r}; allowed: model, data, loss")
        fn, kwargs = value if isinstance(value, tuple) else (value, {})
        out[role] = {"factory": fn if isinstance(fn, str) else factory_ref(fn), "kwargs": jsonable(kwargs)}
    return out


def data_digest(*objectives: Objective | None) -> str:
    """SHA-256 (first 16 hex digits) of the examples the objectives hold (detects changed data on resume).

    In-memory data is hashed in order; a loader's examples are hashed one by one and the digests sorted, so
    a shuffling loader gives the same fingerprint on every pass.
    """
    h = hashlib.sha256()
    for obj in objectives:
        if obj is None:
            continue
        if obj.in_memory:
            for t in tensors_of((obj.data.inputs, obj.data.targets)):
                h.update(tensor_bytes(t))
            continue
        rows = []
        for inputs, targets in obj.chunks():
            for i in range(len(targets)):
                row = hashlib.sha256()
                for t in tensors_of((take(inputs, slice(i, i + 1)), targets[i:i + 1])):
                    row.update(tensor_bytes(t))
                rows.append(row.digest())
        for r in sorted(rows):
            h.update(r)
    return h.hexdigest()[:16]

