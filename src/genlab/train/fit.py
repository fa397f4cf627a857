"""The one training loop, open: ``fit(objective, optimizer, out, plugins=...)`` on any model, loss and data.

Determinism and exact resume rest on one rule: the mini-batch of step ``t`` is a pure function of
``(seed, t)`` -- for in-memory data a permutation per epoch drawn from ``SeedSequence([seed, epoch])``; for
a ``DataLoader`` with a random sampler, the sampler's generator is re-seeded from ``(seed, epoch)`` at each
epoch (a loader with a fixed order needs nothing) -- and the checkpoint holds the model, the optimizer,
the global torch RNG (dropout) state and every plugin's state under its key. A run killed at any point and
restarted with the same call therefore replays nothing twice and skips nothing: it reloads the last
checkpoint, drops metrics records logged after it, and recomputes the same steps bit for bit.

The loop knows optimizers only as ``torch.optim`` optimizers (closure or not: an optimizer with
``needs_closure = True`` gets the gradient closure, as IVON and variational GD do) and features only as
plugins (:mod:`genlab.train.callbacks`). It imports nothing from ``optim/``, ``curvature/`` or ``bounds/``.

Example (a plain model, loss and loader)::

    from torch import nn
    from genlab.objective import Objective
from genlab.registry import factory_ref, imported_modules
    from genlab.train import fit
    obj = Objective(model, nn.CrossEntropyLoss(label_smoothing=0.1), train_loader)
    run = fit(obj, torch.optim.SGD(model.parameters(), lr=0.1), "runs/mine", epochs=5,
              test=Objective(model, "ce", test_loader))
"""

from __future__ import annotations

import functools
import hashlib
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from genlab.batching import split_batch, take, tensors_of
from genlab.errors import CheckpointError, ConfigError, DivergenceError, GenlabError
from genlab.jsonio import jsonable, write_json_atomic
from genlab.objective import Objective
from genlab.registry import factory_ref, imported_modules
from genlab.seeding import keyed_generator
from genlab.train.callbacks import Callback, EvalCallback, TrainState
from genlab.train.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint, save_state_dict
from genlab.train.run_dir import RunDir, environment_info


class TrainingInterrupted(GenlabError):
    """Ctrl-C or SIGTERM during training: the checkpoint was saved; rerunning resumes."""

    exit_code = 130


@dataclass
class Schedule:
    """How many steps, which examples each step uses, and the learning-rate schedule."""

    total_steps: int
    steps_per_epoch: int
    seed: int = 0
    full_batch: bool = True
    batch_size: int | None = None   # in-memory mini-batches; None with a loader: the loader's batches
    lr_schedule: str = "constant"   # or "cosine" (decay to 0 over total_steps)
    eval_every: int | None = None
    checkpoint_every: int | None = None

    def lr_factor(self, step: int) -> float:
        """The multiplier of the base learning rates at ``step`` (0-based)."""
        if self.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * step / max(self.total_steps, 1)))
        return 1.0


@functools.lru_cache(maxsize=2)
def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the training points in one epoch: a function of (seed, epoch) alone."""
    return torch.randperm(n, generator=keyed_generator(seed, epoch))


class _LoaderSteps:
    """Mini-batches from a loader, one per step, each epoch's order a function of ``(seed, epoch)``."""

    def __init__(self, loader, seed: int, steps_per_epoch: int):
        self.loader, self.seed, self.steps_per_epoch = loader, seed, steps_per_epoch
        self._it: Iterator | None = None
        self._pos: tuple[int, int] | None = None  # (epoch, position) the iterator will yield next

    def batch(self, step: int):
        epoch, pos = divmod(step, self.steps_per_epoch)
        if self._pos != (epoch, pos):
            sampler = getattr(self.loader, "sampler", None)
            if isinstance(sampler, torch.utils.data.RandomSampler):
                sampler.generator = keyed_generator(self.seed, epoch)
            elif hasattr(sampler, "set_epoch"):  # DistributedSampler and friends
                sampler.set_epoch(epoch)
            self._it = iter(self.loader)
            for _ in range(pos):  # a resume in the middle of an epoch: skip what was done
                next(self._it)
        self._pos = (epoch, pos + 1) if pos + 1 < self.steps_per_epoch else (epoch + 1, 0)
        item = next(self._it)
        if self._pos[1] == 0:
            self._it = None
            self._pos = None
        return split_batch(item)


class Session:
    """One call of the loop: the live objective, optimizer, plugins and state, and the run directory."""

    def __init__(self, objective: Objective, optimizer: torch.optim.Optimizer, rd: RunDir, schedule: Schedule, *,
                 test: Objective | None = None, plugins: Sequence[Callback] = (), quiet: bool = False,
                 record: dict[str, Any], describe: str = "", fingerprint: str | None = None,
                 config: Any = None, env_extra: dict[str, Any] | None = None, base_lrs: list[float] | None = None):
        self.rd, self.quiet, self.schedule, self.record = rd, quiet, schedule, record
        self.objective, self.optimizer, self.model = objective, optimizer, objective.model
        self.describe = describe
        self.state = TrainState(model=self.model, optimizer=optimizer, objective=objective, test_objective=test,
                                config=config, seed=schedule.seed, batch_size=schedule.batch_size,
                                total_steps=schedule.total_steps, steps_per_epoch=schedule.steps_per_epoch)
        every = schedule.eval_every or schedule.steps_per_epoch
        self.plugins = [EvalCallback(every), *plugins]
        keys = [p.key for p in self.plugins]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup is not None:
            raise ConfigError(f"two plugins share the state key {dup!r}; give one a distinct state_key")
        self.checkpoint_every = schedule.checkpoint_every or every
        self.fingerprint = fingerprint
        self.env_extra = env_extra or {}
        self.base_lrs = base_lrs if base_lrs is not None else [float(g["lr"]) for g in optimizer.param_groups]
        self.loader_steps = None
        if not schedule.full_batch and not objective.in_memory:
            self.loader_steps = _LoaderSteps(objective.data.loader, schedule.seed, schedule.steps_per_epoch)
        self.resumed = False
        self.elapsed_before = 0.0
        self.t0 = time.perf_counter()
        self.bar = None

    # ------------------------------------------------------------- set-up
    def restore(self) -> bool:
        """Load the checkpoint if there is one (returns True), else start a fresh run directory."""
        rd, state = self.rd, self.state
        self.resumed = rd.config.is_file() and rd.checkpoint.is_file()
        if self.resumed:
            _check_same_data(rd, self.fingerprint)
            meta = load_checkpoint(rd.checkpoint, self.model, self.optimizer)
            state.step = meta["step"]
            self.elapsed_before = meta["extra"].get("elapsed", 0.0)
            self._restore_plugins(meta["extra"])
            rd.truncate_metrics(state.step)
        else:
            rd.metrics.unlink(missing_ok=True)  # a config written but no checkpoint yet: start afresh
            for p in self.plugins:
                p.on_init(state)
            torch.manual_seed(self.schedule.seed + 1)  # dropout stream, independent of the init stream
            rd.create()
            test_n = state.test_objective.n if state.test_objective is not None else None
            write_json_atomic(rd.env, {**environment_info(self.schedule.seed, str(self.objective.device)),
                                       "data_fingerprint": self.fingerprint, "num_params": self.objective.num_params(),
                                       "n_train": self.objective.n, "n_test": test_n, "imports": imported_modules(),
                                       **self.env_extra})
        # the settings now in force (a resumed run may have been lengthened)
        write_json_atomic(rd.config, self.record)
        return self.resumed

    def _restore_plugins(self, extra: dict[str, Any]) -> None:
        saved = extra.get("plugins")
        if saved is None and "callbacks" in extra:  # checkpoints before state keys: a list by position
            old = extra["callbacks"]
            saved = {"eval": old[0]} if old else {}
            if len(old) == len(self.plugins):  # same plugins as then (nothing added on resume)
                saved = {p.key: s for p, s in zip(self.plugins, old)}
        for p in self.plugins:
            if p.key in (saved or {}):
                p.load_state_dict(saved[p.key])

    # ---------------------------------------------------------- bookkeeping
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def save(self) -> None:
        save_checkpoint(self.rd.checkpoint, self.state.step, self.model, self.optimizer,
                        extra={"elapsed": self.elapsed(), "plugins": {p.key: p.state_dict() for p in self.plugins}})

    def flush_metrics(self) -> None:
        state = self.state
        if not state.metrics:
            return
        self.rd.append_metrics({"step": state.step, "epoch": state.epoch, "time": self.elapsed(), **state.metrics})
        if self.bar is not None and not self.bar.disable:
            self.bar.set_postfix_str(_format_record(state, short=True))
        elif not self.quiet:
            print(_format_record(state), file=sys.stderr)
        state.metrics = {}

    def kept_step(self) -> int:
        return read_checkpoint_metadata(self.rd.checkpoint)["step"]

    def stop(self, status: str, message: str | None = None) -> None:
        if self.bar is not None:
            self.bar.close()
        for p in self.plugins:  # event files of a run that stops early are closed too
            p.close()
        _write_summary(self, status, message)

    # ---------------------------------------------------------------- steps
    def _step_examples(self) -> None:
        state, sch = self.state, self.schedule
        state.indices, state.batch = None, None
        if sch.full_batch:
            return
        if self.loader_steps is not None:
            state.batch = self.loader_steps.batch(state.step)
            return
        epoch, pos = divmod(state.step, sch.steps_per_epoch)
        perm = epoch_permutation(sch.seed, epoch, self.objective.n)
        state.indices = perm[pos * sch.batch_size:(pos + 1) * sch.batch_size]

    def _diverged(self, what: str) -> DivergenceError:
        step = self.state.step + 1
        return DivergenceError(f"{what}; last good checkpoint (step {self.kept_step()}) kept in "
                               f"{self.rd.checkpoint}; try a smaller learning rate", step=step)

    def one_step(self) -> None:
        """Gradient, checks, optimizer step, plugins, metrics, checkpoint: one step of the run."""
        state, opt = self.state, self.optimizer
        self._step_examples()
        if self.schedule.lr_schedule != "constant":  # a pure function of the step: resumed runs follow it
            factor = self.schedule.lr_factor(state.step)
            for group, base in zip(opt.param_groups, self.base_lrs):
                group["lr"] = base * factor
        objective, indices, batch = self.objective, state.indices, state.batch

        def compute(target_transform=None) -> float:
            return objective.accumulate_grad(indices, target_transform=target_transform, batch=batch)

        for p in self.plugins:
            compute = p.wrap_gradient(state, compute)
        opt.zero_grad(set_to_none=True)
        if getattr(opt, "needs_closure", False):  # multi-sample / line-search optimizers

            def closure():
                opt.zero_grad(set_to_none=True)
                return compute()

            loss = float(opt.step(closure, **self._step_kwargs()))
        else:
            loss = compute()
            if not math.isfinite(loss):
                raise self._diverged(f"non-finite loss ({loss}) at step {state.step + 1}")
            opt.step(**self._step_kwargs())
        for p in self.plugins:
            p.after_optimizer_step(state)
        if not bool(torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()):
            raise self._diverged(f"non-finite parameters after step {state.step + 1} (its loss was {loss:.4g})")
        state.step += 1
        state.batch_loss = loss
        self.bar.update(1)
        for p in self.plugins:
            p.on_step_end(state)
        self.flush_metrics()
        if state.step % self.checkpoint_every == 0 or state.step == state.total_steps:
            self.save()

    def _step_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for p in self.plugins:
            kwargs.update(p.step_kwargs(self.state))
        return kwargs

    def run(self) -> None:
        """Train to ``total_steps``, then write the final model and the summary."""
        state, rd = self.state, self.rd
        rd.summary.unlink(missing_ok=True)
        if not self.quiet:
            how = f"resuming at step {state.step}" if self.resumed else "starting"
            print(f"{rd.path}: {how}; {self.describe}{state.total_steps} steps", file=sys.stderr)
        self.t0 = time.perf_counter()
        self.bar = tqdm(total=state.total_steps, initial=state.step, desc=f"train {rd.path.name}", unit="step",
                        disable=self.quiet or not sys.stderr.isatty(), file=sys.stderr)
        for p in self.plugins:
            p.on_train_start(state, resumed=self.resumed)
        self.flush_metrics()
        if not self.resumed:
            self.save()
        try:
            with StopOnSignals() as sigint:
                while state.step < state.total_steps and not sigint.requested:
                    self.one_step()
        except DivergenceError as err:
            self.stop("diverged", message=str(err))
            raise
        except KeyboardInterrupt:  # a second Ctrl-C, possibly mid-step: keep the last checkpoint as it is
            self.stop("interrupted")
            raise TrainingInterrupted(f"interrupted during step {state.step + 1}; checkpoint of step "
                                      f"{self.kept_step()} kept in {rd.checkpoint}; rerun the same command to "
                                      f"resume") from None
        if state.step < state.total_steps:  # first Ctrl-C: stopped cleanly at a step boundary
            self.save()
            self.stop("interrupted")
            raise TrainingInterrupted(f"interrupted at step {state.step}/{state.total_steps}; checkpoint saved in "
                                      f"{rd.checkpoint}; rerun the same command to resume")
        self.bar.close()
        for p in self.plugins:
            p.on_train_end(state)
        self.flush_metrics()
        save_state_dict(rd.model, self.model.state_dict(), metadata={"format": "genlab-model-1"})
        self.stop("complete")

    def complete(self) -> bool:
        """Restore, then report whether the run directory already holds this run, finished."""
        return (self.restore() and self.state.step >= self.state.total_steps and self.rd.model.is_file())

    def run_or_skip(self) -> None:
        """Restore; run to the end unless the directory already holds the finished run (then say so)."""
        if self.complete():
            if not self.quiet:
                print(f"{self.rd.path}: run already complete ({self.state.step} steps); nothing to do",
                      file=sys.stderr)
        else:
            self.run()


def _check_same_data(rd: RunDir, fingerprint: str | None) -> None:
    recorded = rd.read_json(rd.env).get("data_fingerprint") if rd.env.is_file() else None
    if fingerprint and recorded and recorded != fingerprint:
        raise CheckpointError(f"the data for {rd.path} differs from the data it was trained on (fingerprint "
                              f"{fingerprint} vs {recorded}); check GENLAB_DATA / --data-dir")


class StopOnSignals:
    """The first Ctrl-C (SIGINT) or SIGTERM (a scheduler pre-empting the job) asks the loop to stop at the
    next step boundary, so the saved state is consistent; a second one interrupts at once."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for name in self.SIGNALS:
                sig = getattr(signal, name)
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        return False


def _format_record(state: TrainState, short: bool = False) -> str:
    m = state.metrics
    if short:
        return f"loss {m.get('train_loss', float('nan')):.4f} test acc {m.get('test_accuracy', float('nan')):.3f}"
    parts = [f"step {state.step}/{state.total_steps}", f"epoch {state.epoch:.2f}"]
    for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        if k in m:
            parts.append(f"{k} {m[k]:.4f}")
    return "  ".join(parts)


def _write_summary(session: Session, status: str, message: str | None = None) -> None:
    rd, state = session.rd, session.state
    records = rd.read_metrics()
    last = next((r for r in reversed(records) if "train_loss" in r), {})
    summary = {
        "status": status,
        "steps": state.step,
        "total_steps": state.total_steps,
        "epochs": state.epoch,
        "wall_time_s": session.elapsed(),
        "num_params": state.objective.num_params(),
        "n_train": state.objective.n,
        "n_test": state.test_objective.n if state.test_objective is not None else None,
        "data_fingerprint": session.fingerprint,
        "evaluated_at_step": last.get("step"),
    }
    for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        summary[k] = last.get(k)
    if last:
        summary["generalization_gap_loss"] = _diff(last.get("test_loss"), last.get("train_loss"))
        summary["generalization_gap_accuracy"] = _diff(last.get("train_accuracy"), last.get("test_accuracy"))
    tracked = next((r for r in reversed(records) if "sharpness" in r), None)
    if tracked is not None:
        summary["sharpness"] = tracked["sharpness"]
        summary["stability_threshold"] = tracked.get("stability_threshold")
    for p in session.plugins:
        summary.update(p.summary(state))
    if message:
        summary["message"] = message
    write_json_atomic(rd.summary, summary)


def _diff(a, b):
    numbers = (int, float)
    return a - b if isinstance(a, numbers) and isinstance(b, numbers) else None


# ---------------------------------------------------------------------------------------------- fit()
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
    else:
        per_epoch = sum(1 for _ in objective.data.loader)
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
    rd = open_run_dir(out, overwrite)
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


def open_run_dir(out: str | Path, overwrite: bool) -> RunDir:
    """The run directory ``out``: refused if it is a file; with ``overwrite`` the files genlab wrote there are
    removed (only those: nothing genlab did not write is deleted)."""
    rd = RunDir(out)
    if rd.path.exists() and not rd.path.is_dir():
        raise ConfigError(f"--out {rd.path} exists and is not a directory; give a directory for the run")
    if overwrite and rd.path.exists():
        for p in (rd.config, rd.env, rd.metrics, rd.summary, rd.checkpoint, rd.model):
            p.unlink(missing_ok=True)
    return rd


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
                h.update(_bytes(t))
            continue
        rows = []
        for inputs, targets in obj.chunks():
            for i in range(len(targets)):
                row = hashlib.sha256()
                for t in tensors_of((take(inputs, slice(i, i + 1)), targets[i:i + 1])):
                    row.update(_bytes(t))
                rows.append(row.digest())
        for r in sorted(rows):
            h.update(r)
    return h.hexdigest()[:16]


def _bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
