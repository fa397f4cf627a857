"""The one training loop: GD, SGD, Adam and any registered optimizer, with resume.

Determinism and exact resume rest on one rule: the mini-batch of step ``t`` is a
pure function of ``(seed, t)`` (a permutation per epoch drawn from
``SeedSequence([seed, epoch])``), and the checkpoint holds the model, the
optimizer and the global torch RNG (dropout) state. A run killed at any point and
restarted with the same command therefore replays nothing twice and skips
nothing: it reloads the last checkpoint, drops metrics records logged after it,
and recomputes the same steps bit for bit.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from genlab.config import TrainConfig
from genlab.errors import CheckpointError, DivergenceError, GenlabError
from genlab.train.run import (Run, data_fingerprint, load_data, load_run, make_model, make_objectives,
                        read_run_config, resolve_device)
from genlab.train.callbacks import Callback, EvalCallback, TrainState
from genlab.train.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint, save_state_dict
from genlab.train.optimizers import OPTIMIZERS, build_optimizer
from genlab.jsonio import write_json_atomic
from genlab.train.run_dir import RunDir, environment_info


class TrainingInterrupted(GenlabError):
    """Ctrl-C during training: the checkpoint was saved; rerunning resumes."""

    exit_code = 130


def steps_per_epoch(config: TrainConfig, n: int) -> int:
    """Optimizer steps in one epoch: 1 for full-batch optimizers, else ``ceil(n / batch_size)``."""
    return 1 if OPTIMIZERS[config.optimizer].full_batch else math.ceil(n / config.batch_size)


def total_steps(config: TrainConfig, n: int) -> int:
    """Length of the run in steps (``steps``, or ``epochs`` x steps per epoch; default 10 epochs)."""
    if config.steps is not None:
        return config.steps
    return (config.epochs if config.epochs is not None else 10) * steps_per_epoch(config, n)


def batch_indices(config: TrainConfig, n: int, step: int) -> torch.Tensor | None:
    """Indices of the examples used by step ``step`` (0-based); ``None`` for full-batch steps."""
    if OPTIMIZERS[config.optimizer].full_batch:
        return None
    spe = steps_per_epoch(config, n)
    epoch, pos = divmod(step, spe)
    seed = np.random.SeedSequence([config.seed, epoch]).generate_state(1)[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[pos * config.batch_size:(pos + 1) * config.batch_size]


def _check_resumable(rd: RunDir, config: TrainConfig) -> None:
    old = read_run_config(rd.path)
    new_fields, old_fields = config.trajectory_fields(), old.trajectory_fields()
    diff = [k for k in new_fields if new_fields[k] != old_fields.get(k)]
    if diff:
        k = diff[0]
        raise CheckpointError(
            f"{rd.path} holds a run with other settings ({k}: {old_fields.get(k)!r} there, {new_fields[k]!r} now);"
            f" use a new --out, or --overwrite to discard it")


def train(config: TrainConfig, out: str | Path, *, callbacks: list[Callback] | None = None, quiet: bool = False,
          overwrite: bool = False) -> Run:
    """Train the model a config describes, writing the run directory ``out``; returns the :class:`Run`.

    If ``out`` already holds a run with the same trajectory-defining settings, it
    resumes from its checkpoint (or, if it completed, extends it when ``epochs``
    or ``steps`` grew, and otherwise does nothing). ``overwrite`` discards it.

    Raises:
        DivergenceError: a non-finite loss; the last good checkpoint is kept.
        TrainingInterrupted: Ctrl-C; a checkpoint of the last completed step was saved.
        CheckpointError: ``out`` holds a run with other settings, or a corrupt checkpoint.
    """
    rd = RunDir(out)
    if overwrite and rd.path.exists():
        for p in (rd.config, rd.env, rd.metrics, rd.summary, rd.checkpoint, rd.model):
            p.unlink(missing_ok=True)
    resuming = rd.config.is_file()
    if resuming:
        _check_resumable(rd, config)
    device = resolve_device(config.device)
    data = load_data(config)
    model = make_model(config, data, device)
    optimizer = build_optimizer(model.parameters(), config)
    objective, test_objective = make_objectives(config, data, model)
    n = objective.n
    state = TrainState(config=config, model=model, optimizer=optimizer, objective=objective,
                       test_objective=test_objective, total_steps=total_steps(config, n),
                       steps_per_epoch=steps_per_epoch(config, n))
    every = config.eval_every or state.steps_per_epoch
    callbacks = [EvalCallback(every), *(callbacks or [])]
    checkpoint_every = config.checkpoint_every or every
    fingerprint = data_fingerprint(data)

    elapsed_before = 0.0
    resumed = resuming and rd.checkpoint.is_file()
    if resumed:
        meta = load_checkpoint(rd.checkpoint, model, optimizer)
        state.step = meta["step"]
        elapsed_before = meta["extra"].get("elapsed", 0.0)
        for cb, cb_state in zip(callbacks, meta["extra"].get("callbacks", [])):
            cb.load_state_dict(cb_state)
        rd.truncate_metrics(state.step)
        if state.step >= state.total_steps and rd.model.is_file():
            if not quiet:
                print(f"{rd.path}: run already complete ({state.step} steps); nothing to do", file=sys.stderr)
            return load_run(rd.path, device=str(device))
    else:
        if resuming:  # config written but no checkpoint yet: start afresh
            rd.metrics.unlink(missing_ok=True)
        torch.manual_seed(config.seed + 1)  # dropout stream, independent of the init stream
        rd.create()
        write_json_atomic(rd.config, config.model_dump())
        write_json_atomic(rd.env, {**environment_info(config.seed, str(device)), "data_fingerprint": fingerprint,
                                   "num_params": objective.num_params(), "n_train": n,
                                   "n_test": test_objective.n})
    rd.summary.unlink(missing_ok=True)

    def save(step: int) -> None:
        save_checkpoint(rd.checkpoint, step, model, optimizer,
                        extra={"elapsed": elapsed_before + time.perf_counter() - t0,
                               "callbacks": [cb.state_dict() for cb in callbacks]})

    def flush_metrics() -> None:
        if state.metrics:
            rd.append_metrics({"step": state.step, "epoch": state.epoch,
                               "time": elapsed_before + time.perf_counter() - t0, **state.metrics})
            if not quiet and not show_bar:
                print(_format_record(state), file=sys.stderr)
            elif show_bar:
                bar.set_postfix_str(_format_record(state, short=True))
            state.metrics = {}

    if not quiet:
        how = f"resuming at step {state.step}" if resumed else "starting"
        print(f"{rd.path}: {how}; {config.dataset} ({n} train) {config.model} ({objective.num_params():,} params) "
              f"{config.optimizer} lr={config.lr}, {state.total_steps} steps", file=sys.stderr)
    t0 = time.perf_counter()
    show_bar = not quiet and sys.stderr.isatty()
    bar = tqdm(total=state.total_steps, initial=state.step, disable=not show_bar, desc=f"train {rd.path.name}",
               unit="step", file=sys.stderr)
    for cb in callbacks:
        cb.on_train_start(state, resumed=resumed)
    flush_metrics()
    if not resumed:
        save(0)
    try:
        with _StopOnSigint() as stop:
            while state.step < state.total_steps and not stop.requested:
                optimizer.zero_grad(set_to_none=True)
                loss = objective.accumulate_grad(batch_indices(config, n, state.step))
                if not math.isfinite(loss):
                    raise DivergenceError(
                        f"non-finite loss ({loss}) at step {state.step + 1}; last good checkpoint (step "
                        f"{read_checkpoint_metadata(rd.checkpoint)['step']}) kept in {rd.checkpoint}; "
                        f"try a smaller --lr", step=state.step + 1)
                _step_optimizer(optimizer, objective, config, state.step)
                if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                    raise DivergenceError(
                        f"non-finite parameters after step {state.step + 1} (its loss was {loss:.4g}); last good "
                        f"checkpoint (step {read_checkpoint_metadata(rd.checkpoint)['step']}) kept in "
                        f"{rd.checkpoint}; try a smaller --lr", step=state.step + 1)
                state.step += 1
                state.batch_loss = loss
                bar.update(1)
                for cb in callbacks:
                    cb.on_step_end(state)
                flush_metrics()
                if state.step % checkpoint_every == 0 or state.step == state.total_steps:
                    save(state.step)
    except DivergenceError as err:
        bar.close()
        _write_summary(rd, state, "diverged", elapsed_before + time.perf_counter() - t0, fingerprint,
                       message=str(err))
        raise
    except KeyboardInterrupt:  # a second Ctrl-C, possibly mid-step: keep the last checkpoint as it is
        bar.close()
        kept = read_checkpoint_metadata(rd.checkpoint)["step"]
        _write_summary(rd, state, "interrupted", elapsed_before + time.perf_counter() - t0, fingerprint)
        raise TrainingInterrupted(f"interrupted during step {state.step + 1}; checkpoint of step {kept} kept in "
                                  f"{rd.checkpoint}; rerun the same command to resume") from None
    if state.step < state.total_steps:  # first Ctrl-C: stopped cleanly at a step boundary
        bar.close()
        save(state.step)
        _write_summary(rd, state, "interrupted", elapsed_before + time.perf_counter() - t0, fingerprint)
        raise TrainingInterrupted(f"interrupted at step {state.step}/{state.total_steps}; checkpoint saved in "
                                  f"{rd.checkpoint}; rerun the same command to resume")
    bar.close()
    for cb in callbacks:
        cb.on_train_end(state)
    flush_metrics()
    save_state_dict(rd.model, model.state_dict(), metadata={"format": "genlab-model-1"})
    _write_summary(rd, state, "complete", elapsed_before + time.perf_counter() - t0, fingerprint)
    return load_run(rd.path, device=str(device))


class _StopOnSigint:
    """First Ctrl-C asks the loop to stop at the next step boundary (so the saved
    state is consistent); a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _step_optimizer(optimizer: torch.optim.Optimizer, objective, config: TrainConfig, step: int) -> None:
    """One optimizer step; optimizers needing a closure (line searches, multi-sample methods) get one."""
    needs_closure = getattr(optimizer, "needs_closure", False)
    if needs_closure:
        idx = batch_indices(config, objective.n, step)

        def closure():
            optimizer.zero_grad(set_to_none=True)
            return objective.accumulate_grad(idx)

        optimizer.step(closure)
    else:
        optimizer.step()


def _format_record(state: TrainState, short: bool = False) -> str:
    m = state.metrics
    if short:
        return f"loss {m.get('train_loss', float('nan')):.4f} test acc {m.get('test_accuracy', float('nan')):.3f}"
    parts = [f"step {state.step}/{state.total_steps}", f"epoch {state.epoch:.2f}"]
    for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        if k in m:
            parts.append(f"{k} {m[k]:.4f}")
    return "  ".join(parts)


def _write_summary(rd: RunDir, state: TrainState, status: str, elapsed: float, fingerprint: str,
                   message: str | None = None) -> None:
    records = rd.read_metrics()
    last = next((r for r in reversed(records) if "train_loss" in r), {})
    summary = {
        "status": status,
        "steps": state.step,
        "total_steps": state.total_steps,
        "epochs": state.epoch,
        "wall_time_s": elapsed,
        "num_params": state.objective.num_params(),
        "n_train": state.objective.n,
        "n_test": state.test_objective.n,
        "data_fingerprint": fingerprint,
        "evaluated_at_step": last.get("step"),
    }
    for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        summary[k] = last.get(k)
    if last:
        summary["generalization_gap_loss"] = _diff(last.get("test_loss"), last.get("train_loss"))
        summary["generalization_gap_accuracy"] = _diff(last.get("train_accuracy"), last.get("test_accuracy"))
    if message:
        summary["message"] = message
    write_json_atomic(rd.summary, summary)


def _diff(a, b):
    numbers = (int, float)
    return a - b if isinstance(a, numbers) and isinstance(b, numbers) else None
