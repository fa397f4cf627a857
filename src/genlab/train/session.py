"""The loop's engine: one :class:`Session` trains an Objective with an optimizer and plugins into a run
directory, checkpointing, resuming and stopping cleanly (used by :func:`genlab.train.fit` and
:func:`genlab.train.train`).

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
"""

from __future__ import annotations

import functools
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from genlab.batching import split_batch
from genlab.errors import ConfigError, DivergenceError, GenlabError
from genlab.jsonio import write_json_atomic
from genlab.objective import Objective
from genlab.registry import imported_modules
from genlab.seeding import keyed_generator
from genlab.train.callbacks import Callback, EvalCallback, TrainState
from genlab.train.checkpoint import (load_checkpoint, load_state_dict, read_checkpoint_metadata, save_checkpoint,
                                     save_state_dict)
from genlab.train.run import check_same_data
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
            check_same_data(rd, self.fingerprint)
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

        def compute(target_transform=None, input_transform=None) -> float:
            return objective.accumulate_grad(indices, target_transform=target_transform, batch=batch,
                                             input_transform=input_transform)

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
        done = self.restore() and self.state.step >= self.state.total_steps and self.rd.model.is_file()
        if done:
            load_state_dict(self.rd.model)  # a damaged final model is reported, never "nothing to do"
        return done

    def run_or_skip(self) -> None:
        """Restore; run to the end unless the directory already holds the finished run (then say so). A run
        killed after its final model was written but before its summary gets the summary written now."""
        if not self.complete():
            self.run()
            return
        if self._summary_status() != "complete":
            self.t0 = time.perf_counter()
            self.stop("complete")
            if not self.quiet:
                print(f"{self.rd.path}: run complete ({self.state.step} steps); its summary was missing and is "
                      f"written now", file=sys.stderr)
        elif not self.quiet:
            print(f"{self.rd.path}: run already complete ({self.state.step} steps); nothing to do", file=sys.stderr)

    def _summary_status(self) -> str | None:
        try:
            return self.rd.read_json(self.rd.summary).get("status")
        except GenlabError:  # missing or damaged: genlab rewrites it from the checkpoint's state
            return None


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
