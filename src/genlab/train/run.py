"""A run, picked up from its directory alone: settings, model, data and Objective.

:func:`build_run_parts` is the one place where a :class:`~genlab.config.TrainConfig`
becomes data, a model and Objectives; training and :func:`load_run` both use it,
so a loaded run sees exactly what its training saw.

Example::

    run = genlab.load_run("runs/x")
    run.config.optimizer.lr, run.summary["test_accuracy"]
    run.objective.hvp(v)          # Hessian-vector product on its training set
    run.model(run.data.x_test[:5])
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genlab.config import TrainConfig, validate_config
from genlab.data import Dataset, load_dataset
from genlab.data.supersample import draw_supersample
from genlab.errors import CheckpointError, ConfigError
from genlab.registry import import_user_modules, resolve_factory
from genlab.models import build_model
from genlab.objective import Objective
from genlab.train.checkpoint import load_state_dict
from genlab.train.plugins import transform_model
from genlab.train.run_dir import RunDir


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; other names are taken as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} asked for but CUDA is not available; allowed here: auto, cpu")
    return torch.device(device)


def data_fingerprint(data: Dataset) -> str:
    """SHA-256 (first 16 hex digits) of the training and test tensors: detects changed data files."""
    h = hashlib.sha256()
    for t in (data.x_train, data.y_train, data.x_test, data.y_test):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


#: settings naming another run's (or a file's) weights that a run starts from
UPSTREAM_SETTINGS = ("init_from", "subspace_prior", "distill_from")


def upstream_weights(config: TrainConfig) -> dict[str, str]:
    """``{setting: SHA-256 (16 hex digits)}`` of the weights each of :data:`UPSTREAM_SETTINGS` names (a run
    directory's ``model.safetensors``, or the file itself); settings not given, or naming nothing yet, are left
    out (the run's own start reports those)."""
    from genlab.train.distill import original_weights_file

    flat, out = config.flat(), {}
    for name in UPSTREAM_SETTINGS:
        path = flat.get(name)
        if path is None:
            continue
        try:
            file = original_weights_file(path)
        except ConfigError:
            continue
        out[name] = hashlib.sha256(file.read_bytes()).hexdigest()[:16]
    return out


def check_same_upstream(rd: RunDir, upstream: dict[str, str]) -> None:
    """Raise :class:`CheckpointError` if a weights file this run started from has changed since (a stage reused
    after the network it was fitted to, or started from, was replaced under the same path)."""
    recorded = rd.read_json(rd.env).get("upstream_weights") if rd.env.is_file() else None
    if recorded is None:   # runs before 2026-12-04 recorded none
        return
    for name, digest in upstream.items():
        if recorded.get(name) not in (None, digest):
            raise CheckpointError(f"{rd.path}: the weights its {name} names changed since it started (SHA-256 "
                                  f"{recorded[name]} then, {digest} now); use a new --out for the new weights")


def check_same_data(rd: RunDir, fingerprint: str) -> None:
    """Raise :class:`CheckpointError` if the run was trained on data with another fingerprint."""
    recorded = rd.read_json(rd.env).get("data_fingerprint") if rd.env.is_file() else None
    if recorded and recorded != fingerprint:
        raise CheckpointError(f"the data for {rd.path} differs from the data it was trained on (fingerprint "
                              f"{fingerprint} vs {recorded}); check GENLAB_DATA / --data-dir")


def load_data(config: TrainConfig) -> Dataset:
    """The dataset a config names, with its subset, label-noise and loss options applied (and, for SGLD's
    ``cmi`` bound, its super-sample drawn: :func:`genlab.data.supersample.draw_supersample`)."""
    d = config.data
    data = load_dataset(d.name, n_train=d.n_train, label_noise=d.label_noise, loss=d.loss, seed=config.run.seed,
                        data_dir=d.data_dir, options=dict(d.dataset_options), normalise_first=d.normalise_first)
    o = config.optimizer
    if getattr(o, "sgld_bound", None) == "cmi":
        n = len(data.x_train)
        m = o.sgld_prior_size if o.sgld_prior_size is not None else n - 1
        seed = o.sgld_supersample_seed if o.sgld_supersample_seed is not None else config.run.seed
        data = draw_supersample(data, n - m, supersample_seed=seed, selector_seed=config.run.seed)
    return data


def available_memory(device: torch.device) -> int:
    """Bytes free for tensors on ``device``: the GPU's free memory, or the machine's physical memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits_in_memory(build, device: torch.device, dtype: str) -> None:
    """Refuse, before allocating, a model whose weights, gradient and two optimizer states would not fit in
    ``device``'s memory: ``build()`` is run on PyTorch's ``meta`` device, which allocates nothing. A model
    that cannot be built there (a user factory doing I/O, say) is not checked."""
    try:
        with torch.device("meta"):
            count = sum(p.numel() for p in build().parameters())
    except Exception:  # noqa: BLE001 -- only an estimate; the real build reports its own errors
        return
    need = 4 * count * torch.finfo(getattr(torch, dtype)).bits // 8
    have = available_memory(device)
    if need > have:
        raise ConfigError(f"model: {count:,} parameters need about {need / 2 ** 30:.1f} GiB for weights, gradient "
                          f"and optimizer state, more than the {have / 2 ** 30:.1f} GiB of {device}; give a smaller "
                          f"--width / --depth")


def make_model(config: TrainConfig, data: Dataset, device: torch.device) -> torch.nn.Module:
    """The model a config names, initialised from ``config.run.seed``, on ``device`` in ``config.run.dtype``."""
    m = config.model
    check_fits_in_memory(lambda: build_model(m.name, data.input_shape, data.output_dim, width=m.width, depth=m.depth,
                                             dropout=m.dropout, activation=m.activation, batchnorm=m.batchnorm,
                                             **m.model_options), device, config.run.dtype)
    torch.manual_seed(config.run.seed)  # after the size check: the real build starts from the seed
    model = build_model(m.name, data.input_shape, data.output_dim, width=m.width, depth=m.depth, dropout=m.dropout,
                        activation=m.activation, batchnorm=m.batchnorm, **m.model_options)
    model = transform_model(config, model)  # e.g. subspace training: the only parameter is w (and a codebook)
    return model.to(device=device, dtype=getattr(torch, config.run.dtype))


def make_objectives(config: TrainConfig, data: Dataset, model: torch.nn.Module) -> tuple[Objective, Objective]:
    """Objectives on the training and on the test set (same model, same loss)."""
    kw = {"loss": data.loss, "batch_size": config.run.eval_batch_size,
          "classification": data.task == "classification"}
    return Objective(model, data.x_train, data.y_train, **kw), Objective(model, data.x_test, data.y_test, **kw)


@dataclass
class Run:
    """A training run: its settings, trained model, data and Objectives.

    Attributes:
        path: the run directory.
        config: the run's :class:`TrainConfig`.
        model: the trained ``nn.Module`` (final model, or the last checkpoint
            when the run has not finished; see ``status``).
        data: the run's :class:`~genlab.data.Dataset` (train and test tensors).
        objective: :class:`Objective` on the training set (what was minimised).
        test_objective: :class:`Objective` on the test set.
        summary: ``summary.json`` (status and final figures); empty if absent.
        metrics: the records of ``metrics.jsonl``.
        status: ``complete``, ``interrupted``, ``diverged`` or ``running``.
    """

    path: Path
    config: TrainConfig | None      # None for a run written by fit() (see ``record``)
    model: torch.nn.Module
    data: Dataset | None            # None for a run written by fit()
    objective: Objective
    test_objective: Objective | None
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    record: dict[str, Any] = field(default_factory=dict)  # config.json of a fit() run


def read_run_record(path: str | Path) -> dict[str, Any]:
    """The raw ``config.json`` of a run directory (a TrainConfig, or a fit() record)."""
    rd = RunDir(path)
    if not rd.config.is_file():
        raise CheckpointError(f"{rd.path} is not a genlab run directory (no config.json)")
    return rd.read_json(rd.config)


def is_fit_run(path: str | Path) -> bool:
    """Whether the run directory was written by :func:`genlab.train.fit` (not by ``train(config)``)."""
    return read_run_record(path).get("format") == "genlab-fit-1"


def import_recorded_modules(path: str | Path) -> None:
    """Import the ``--import`` modules a run was trained with (recorded in env.json), naming any that fail."""
    rd = RunDir(path)
    try:
        imports = rd.read_json(rd.env).get("imports", []) if rd.env.is_file() else []
    except CheckpointError:  # a damaged env.json is reported where the data are checked against it
        return
    for name in imports:
        try:
            import_user_modules([name])
        except ConfigError as err:
            raise CheckpointError(f"{rd.path} was trained with --import {name}, which cannot be imported here "
                                  f"({err}); run from where it can be, or pass --import") from None


def read_run_config(path: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` stored in a run directory's ``config.json``."""
    return _config_from_record(path, read_run_record(path))


def _config_from_record(path: str | Path, values: dict[str, Any]) -> TrainConfig:
    rd = RunDir(path)
    if values.get("format") == "genlab-fit-1":
        raise CheckpointError(f"{rd.path} was written by fit(), not genlab train; load it with genlab.load_run")
    import_recorded_modules(path)
    if "config_version" not in values and values.get("momentum") == 0.0:  # written before version 2:
        values["momentum"] = None  # 0.0 was the default then (and meant Adam's beta1 0.9): the default now
    if isinstance(values.get("sgld_bound"), bool):  # written before the bound had modes
        values["sgld_bound"] = "heldout" if values["sgld_bound"] else "off"
    return validate_config(TrainConfig, values)


def load_run(path: str | Path, device: str | None = None) -> Run:
    """Load a run from its directory alone.

    Rebuilds the data from the stored settings (checking its fingerprint against
    the one recorded at training time), builds the model and loads the final
    weights (``model.safetensors``), or the last checkpoint's for a run that did
    not finish.

    Args:
        path: the run directory written by :func:`genlab.train.train`.
        device: where to put the model and data (default: the config's device).
    """
    rd = RunDir(path)
    record = read_run_record(rd.path)  # read once: which kind of run, and its settings
    if record.get("format") == "genlab-fit-1":
        return load_fit_run(rd.path, device=device, record=record)
    config = _config_from_record(rd.path, record)
    dev = resolve_device(device or config.run.device)
    data = load_data(config)
    check_same_data(rd, data_fingerprint(data))
    model = make_model(config, data, dev)
    _load_weights(rd, model)
    return assemble_run(rd, config, model, data)


def _load_weights(rd: RunDir, model: torch.nn.Module) -> None:
    """The final weights (model.safetensors), or the last checkpoint's for a run that did not finish."""
    if rd.model.is_file():
        state = load_state_dict(rd.model)
    elif rd.checkpoint.is_file():
        tensors = load_state_dict(rd.checkpoint)
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    else:
        raise CheckpointError(f"{rd.path} holds no model.safetensors and no checkpoint.safetensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"weights in {rd.path} do not fit the model its config describes ({err})") from None


def load_fit_run(path: str | Path, device: str | None = None, record: dict[str, Any] | None = None) -> Run:
    """Rebuild a run written by :func:`genlab.train.fit` from the factories it recorded.

    The model comes from ``factories["model"]`` (then the saved weights), the data from
    ``factories["data"]`` (``(train, test)``, each tensors or a loader), the loss from the recorded spec or
    ``factories["loss"]``. A factory whose module cannot be imported is named in one line. ``record``: the
    run's config.json when the caller has read it already.
    """
    rd = RunDir(path)
    record = read_run_record(path) if record is None else record
    import_recorded_modules(path)
    factories = record.get("factories") or {}
    missing = [role for role in ("model", "data") if role not in factories]
    if missing:
        raise CheckpointError(f"{rd.path} was written by fit() without factories for {', '.join(missing)}; "
                              f"it can be resumed by fit() but not rebuilt from its directory (pass "
                              f"factories={{'model': make_model, 'data': make_data}} to fit)")

    def build(role):
        entry = factories[role]
        return resolve_factory(entry["factory"])(**entry.get("kwargs", {}))

    model = build("model")
    if not isinstance(model, torch.nn.Module):
        raise CheckpointError(f"factory {factories['model']['factory']} returned {type(model).__name__}, "
                              f"not an nn.Module")
    dev = resolve_device(device or "auto")
    model = model.to(dev)
    _load_weights(rd, model)
    model.eval()
    data = build("data")
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise CheckpointError(f"factory {factories['data']['factory']} must return (train_data, test_data)")
    train_data, test_data = data
    if "loss" in factories:
        loss = build("loss")
    elif record.get("loss") is not None:
        loss = record["loss"]
    else:
        raise CheckpointError(f"{rd.path}: its loss was a function fit() cannot record; pass "
                              f"factories={{'loss': make_loss}} to fit")
    settings = record.get("objective", {})
    kw = {"batch_size": settings.get("batch_size", 1000), "output": settings.get("output"),
          "classification": settings.get("classification")}
    objective = Objective(model, loss, train_data, **kw)
    test_objective = Objective(model, loss, test_data, **kw) if test_data is not None else None
    summary = rd.read_json(rd.summary) if rd.summary.is_file() else {}
    return Run(path=rd.path, config=None, model=model, data=None, objective=objective,
               test_objective=test_objective, summary=summary, metrics=rd.read_metrics(),
               status=summary.get("status", "running"), record=record)


def assemble_run(rd: RunDir, config: TrainConfig, model: torch.nn.Module, data: Dataset) -> Run:
    """A :class:`Run` of a model and data already in memory, with the directory's summary and metrics."""
    model.eval()
    objective, test_objective = make_objectives(config, data, model)
    summary = rd.read_json(rd.summary) if rd.summary.is_file() else {}
    return Run(path=rd.path, config=config, model=model, data=data, objective=objective,
               test_objective=test_objective, summary=summary, metrics=rd.read_metrics(),
               status=summary.get("status", "running"))
