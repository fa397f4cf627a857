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

import functools
import math
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from genlab.config import TrainConfig
from genlab.errors import CheckpointError, ConfigError, DivergenceError, GenlabError
from genlab.train.run import (Run, assemble_run, check_same_data, data_fingerprint, load_data, make_model,
                              make_objectives, read_run_config, resolve_device)
from genlab.train.callbacks import Callback, EvalCallback, TrainState
from genlab.train.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint, save_state_dict
from genlab.train.noise_injection import after_step, noisy_gradient
from genlab.train.optimizers import OPTIMIZERS, build_optimizer
from genlab.jsonio import write_json_atomic
from genlab.objective import Objective
from genlab.seeding import keyed_generator
from genlab.train.run_dir import RunDir, environment_info


class TrainingInterrupted(GenlabError):
    """Ctrl-C or SIGTERM during training: the checkpoint was saved; rerunning resumes."""

    exit_code = 130


def steps_per_epoch(config: TrainConfig, n: int) -> int:
    """Optimizer steps in one epoch: 1 for full-batch optimizers, else ``ceil(n / batch_size)``."""
    return 1 if OPTIMIZERS[config.optimizer].full_batch else math.ceil(n / config.batch_size)


def total_steps(config: TrainConfig, n: int) -> int:
    """Length of the run in steps (``steps``, or ``epochs`` x steps per epoch; default 10 epochs)."""
    if config.steps is not None:
        return config.steps
    return (config.epochs if config.epochs is not None else 10) * steps_per_epoch(config, n)


def scheduled_lr(config: TrainConfig, step: int, total: int) -> float:
    """The learning rate of step ``step`` (0-based) of ``total``: ``lr`` or its cosine decay to 0."""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * step / max(total, 1)))
    return config.lr


def batch_indices(config: TrainConfig, n: int, step: int) -> torch.Tensor | None:
    """Indices of the examples used by step ``step`` (0-based); ``None`` for full-batch steps."""
    if OPTIMIZERS[config.optimizer].full_batch:
        return None
    epoch, pos = divmod(step, steps_per_epoch(config, n))
    perm = _epoch_permutation(config.seed, epoch, n)
    return perm[pos * config.batch_size:(pos + 1) * config.batch_size]


@functools.lru_cache(maxsize=2)
def _epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the training points in one epoch: a function of (seed, epoch) alone."""
    return torch.randperm(n, generator=keyed_generator(seed, epoch))


def _check_resumable(rd: RunDir, config: TrainConfig) -> None:
    old = read_run_config(rd.path)
    new_fields, old_fields = config.trajectory_fields(), old.trajectory_fields()
    diff = [k for k in new_fields if new_fields[k] != old_fields.get(k)]
    if config.lr_schedule != "constant":  # the schedule depends on the length: lengthening changes the trajectory
        diff += [k for k in ("epochs", "steps") if getattr(config, k) != getattr(old, k)]
    if diff:
        k = diff[0]
        raise CheckpointError(
            f"{rd.path} holds a run with other settings ({k}: {getattr(old, k)!r} there, {getattr(config, k)!r} now);"
            f" use a new --out, or --overwrite to discard it")


def train(config: TrainConfig, out: str | Path, *, callbacks: list[Callback] | None = None, quiet: bool = False,
          overwrite: bool = False) -> Run:
    """Train the model a config describes, writing the run directory ``out``; returns the :class:`Run`.

    If ``out`` already holds a run with the same trajectory-defining settings, it
    resumes from its checkpoint (or, if it completed, extends it when ``epochs``
    or ``steps`` grew, and otherwise does nothing). ``overwrite`` discards it.

    Args:
        config: the run's settings.
        out: the run directory (created if needed).
        callbacks: extra :class:`Callback` objects, run after the built-in evaluation.
        quiet: no progress bar or progress lines.
        overwrite: delete a run with other settings found in ``out`` instead of refusing.

    Raises:
        DivergenceError: a non-finite loss or parameters; the last good checkpoint is kept.
        TrainingInterrupted: Ctrl-C; a checkpoint of the last completed step was saved.
        CheckpointError: ``out`` holds a run with other settings or data, or a corrupt checkpoint.
    """
    rd = RunDir(out)
    if rd.path.exists() and not rd.path.is_dir():
        raise ConfigError(f"--out {rd.path} exists and is not a directory; give a directory for the run")
    if overwrite and rd.path.exists():
        for p in (rd.config, rd.env, rd.metrics, rd.summary, rd.checkpoint, rd.model):
            p.unlink(missing_ok=True)
    if rd.config.is_file():
        _check_resumable(rd, config)
    session = _Session(config, rd, callbacks or [], quiet)
    if session.restore() and session.state.step >= session.state.total_steps and rd.model.is_file():
        if not quiet:
            print(f"{rd.path}: run already complete ({session.state.step} steps); nothing to do", file=sys.stderr)
    else:
        session.run()
    # the trained model and data are in memory already: no second read of the dataset
    return assemble_run(rd, config, session.model, session.data)


class _Session:
    """One call of :func:`train`: the live model, optimizer and state, and the run directory they write."""

    def __init__(self, config: TrainConfig, rd: RunDir, callbacks: list[Callback], quiet: bool):
        self.config, self.rd, self.quiet = config, rd, quiet
        self.device = resolve_device(config.device)
        self.data = load_data(config)
        if config.noise == "label" and self.data.task == "classification" and config.noise_sigma > 1:
            raise ConfigError(f"noise_sigma is the label flip probability for the classification dataset "
                              f"{config.dataset} and must be <= 1 (got {config.noise_sigma})")
        self.model = make_model(config, self.data, self.device)
        self.optimizer = build_optimizer(self.model.parameters(), config, len(self.data.x_train))
        objective, test_objective = make_objectives(config, self.data, self.model)
        n = objective.n
        self.state = TrainState(config=config, model=self.model, optimizer=self.optimizer, objective=objective,
                                test_objective=test_objective, total_steps=total_steps(config, n),
                                steps_per_epoch=steps_per_epoch(config, n))
        self.heldout_objective, self.state.heldout_source = heldout_objective(config, self.data, self.model,
                                                                              test_objective)
        every = config.eval_every or self.state.steps_per_epoch
        self.callbacks = [EvalCallback(every), *_builtin_trackers(config), *callbacks]
        if config.tensorboard:  # last, so it sees every number the other callbacks added to the record
            from genlab.train.tensorboard import TensorBoardLogger

            self.callbacks.append(TensorBoardLogger(rd.path / "tensorboard"))
        self.checkpoint_every = config.checkpoint_every or every
        self.fingerprint = data_fingerprint(self.data)
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
            for cb, cb_state in zip(self.callbacks, meta["extra"].get("callbacks", [])):
                cb.load_state_dict(cb_state)
            rd.truncate_metrics(state.step)
        else:
            rd.metrics.unlink(missing_ok=True)  # a config written but no checkpoint yet: start afresh
            if self.config.init_from is not None or self.config.subspace_prior is not None:
                from genlab.bounds.compression.subspace import initialise_from_runs

                initialise_from_runs(self.config, self.model)
            torch.manual_seed(self.config.seed + 1)  # dropout stream, independent of the init stream
            rd.create()
            write_json_atomic(rd.env, {**environment_info(self.config.seed, str(self.device)),
                                       "data_fingerprint": self.fingerprint, "num_params": state.objective.num_params(),
                                       "n_train": state.objective.n, "n_test": state.test_objective.n})
        # the settings now in force (a resumed run may have been lengthened)
        write_json_atomic(rd.config, self.config.model_dump())
        return self.resumed

    # ---------------------------------------------------------- bookkeeping
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def save(self) -> None:
        save_checkpoint(self.rd.checkpoint, self.state.step, self.model, self.optimizer,
                        extra={"elapsed": self.elapsed(), "callbacks": [cb.state_dict() for cb in self.callbacks]})

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
        for cb in self.callbacks:  # event files of a run that stops early are closed too
            cb.close()
        _write_summary(self.rd, self.state, status, self.elapsed(), self.fingerprint, message)

    # ---------------------------------------------------------------- steps
    def one_step(self) -> None:
        """Gradient, checks, optimizer step, callbacks, metrics, checkpoint: one step of the run."""
        state, config = self.state, self.config
        indices = batch_indices(config, state.objective.n, state.step)
        if config.lr_schedule != "constant":  # a pure function of the step: resumed runs follow it exactly
            for group in self.optimizer.param_groups:
                group["lr"] = scheduled_lr(config, state.step, state.total_steps)
        self.optimizer.zero_grad(set_to_none=True)
        if getattr(self.optimizer, "needs_closure", False):  # multi-sample / line-search optimizers

            def closure():
                self.optimizer.zero_grad(set_to_none=True)
                return state.objective.accumulate_grad(indices)

            loss = float(self.optimizer.step(closure))
        else:
            loss = noisy_gradient(config.noise, config.noise_sigma, state.objective, indices, seed=config.seed,
                                  step=state.step)
            if not math.isfinite(loss):
                raise DivergenceError(f"non-finite loss ({loss}) at step {state.step + 1}; last good checkpoint "
                                      f"(step {self.kept_step()}) kept in {self.rd.checkpoint}; try a smaller --lr",
                                      step=state.step + 1)
            if getattr(self.optimizer, "needs_per_sample_grads", None) is not None:  # SGLD
                from genlab.optim.sgld import step_inputs

                self.optimizer.step(**step_inputs(self.optimizer, state.objective, self.heldout_objective, indices,
                                                  batch_size=config.batch_size, seed=config.seed,
                                                  step=state.step, bound=config.sgld_bound, cov=config.sgld_cov,
                                                  cov_size=config.sgld_cov_size))
            else:
                self.optimizer.step()
        after_step(config.noise, config.noise_sigma, self.model, seed=config.seed, step=state.step)
        if not bool(torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()):
            raise DivergenceError(f"non-finite parameters after step {state.step + 1} (its loss was {loss:.4g}); "
                                  f"last good checkpoint (step {self.kept_step()}) kept in {self.rd.checkpoint}; "
                                  f"try a smaller --lr", step=state.step + 1)
        state.step += 1
        state.batch_loss = loss
        self.bar.update(1)
        for cb in self.callbacks:
            cb.on_step_end(state)
        self.flush_metrics()
        if state.step % self.checkpoint_every == 0 or state.step == state.total_steps:
            self.save()

    def run(self) -> None:
        """Train to ``total_steps``, then write the final model and the summary."""
        state, rd = self.state, self.rd
        rd.summary.unlink(missing_ok=True)
        if not self.quiet:
            how = f"resuming at step {state.step}" if self.resumed else "starting"
            print(f"{rd.path}: {how}; {self.config.dataset} ({state.objective.n} train) {self.config.model} "
                  f"({state.objective.num_params():,} params) {self.config.optimizer} lr={self.config.lr}, "
                  f"{state.total_steps} steps", file=sys.stderr)
        self.t0 = time.perf_counter()
        self.bar = tqdm(total=state.total_steps, initial=state.step, desc=f"train {rd.path.name}", unit="step",
                        disable=self.quiet or not sys.stderr.isatty(), file=sys.stderr)
        for cb in self.callbacks:
            cb.on_train_start(state, resumed=self.resumed)
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
        for cb in self.callbacks:
            cb.on_train_end(state)
        self.flush_metrics()
        save_state_dict(rd.model, self.model.state_dict(), metadata={"format": "genlab-model-1"})
        self.stop("complete")


def _builtin_trackers(config: TrainConfig) -> list[Callback]:
    """The callbacks the config asks for (``track_sharpness``, ``quant_stages``), after evaluation and before the
    caller's."""
    out: list[Callback] = []
    if config.quant_stages > 1:
        from genlab.bounds.compression.quantize import ProgressiveQuantization  # builds on train: import late

        out.append(ProgressiveQuantization(config.quant_stages))
    if config.track_sharpness is not None:
        from genlab.curvature.tracking import SharpnessTracker  # curvature builds on train: import late

        out.append(SharpnessTracker(config.track_sharpness, top_k=config.track_top_k,
                                    trace_matvecs=config.track_trace, jacobian=config.track_jacobian))
    return out


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
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for name in self.SIGNALS:
                sig = getattr(signal, name)
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

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
    tracked = next((r for r in reversed(records) if "sharpness" in r), None)
    if tracked is not None:
        summary["sharpness"] = tracked["sharpness"]
        summary["stability_threshold"] = tracked.get("stability_threshold")
    info = getattr(state.optimizer, "info", None)
    if info is not None and state.config.sgld_bound:
        # Wang et al.: E[gap] <= sqrt(2 R^2 I / n); the 0-1 error is 1/2-sub-Gaussian
        from genlab.bounds.infotheory import information_bound

        c = state.config
        summary["sgld_information"] = info
        summary["sgld_heldout"] = state.heldout_source
        if c.sgld_cov == "batch" and c.sgld_noise != "isotropic":
            summary["sgld_error_gap_bound"] = None
            summary["sgld_bound_note"] = ("no bound: Sigma_t was estimated on the training batch, so the prior "
                                          "chain would depend on the sample (use sgld_cov heldout)")
        else:
            summary["sgld_error_gap_bound"] = information_bound(info, state.objective.n, 0.5)
    if message:
        summary["message"] = message
    write_json_atomic(rd.summary, summary)


def heldout_objective(config, data, model, test_objective) -> tuple[Objective, str]:
    """SGLD's held-out points and where they come from: the training split's points beyond ``n_train`` when
    there are enough (independent of the training sample and of the test figures), else the test split."""
    need = max(config.batch_size, config.sgld_cov_size or 0)
    if data.x_heldout is not None and len(data.x_heldout) >= need:
        return (Objective(model, data.x_heldout, data.y_heldout, loss=data.loss, batch_size=config.eval_batch_size,
                          classification=data.task == "classification"),
                f"{len(data.x_heldout)} training-split points beyond n_train")
    return test_objective, f"the test split ({test_objective.n} points; the test figures reuse them)"


def _diff(a, b):
    numbers = (int, float)
    return a - b if isinstance(a, numbers) and isinstance(b, numbers) else None
