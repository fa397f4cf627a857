"""Sweeps: a grid (or list) of training runs defined in one TOML file, run on a local process pool or on Ray.

A sweep file::

    [sweep]                 # optional
    name = "lr-seeds"       # label of the table (default: the file's stem)
    out = "runs/lr-seeds"   # where the runs and the table go (--out overrides; default runs/NAME)
    jobs = 2                # local pool size (--jobs overrides)
    cpus_per_run = 1        # Ray: CPUs each run declares; both backends: torch threads per run
    gpus_per_run = 0        # Ray: GPUs each run declares (set device = "cuda" in [base])

    [base]                  # settings shared by every run: the keys of `genlab train` (TrainConfig)
    dataset = "mnist1d"
    model = "mlp"
    epochs = 5

    [grid]                  # cartesian product over any settings, seeds included
    lr = [0.05, 0.1]
    seed = [0, 1, 2, 3]

    [[runs]]                # optional list of runs; the grid multiplies each (name = "..." names it)
    optimizer = "sgd"
    [[runs]]
    optimizer = "adam"
    lr = 0.001

Every run writes an ordinary run directory ``OUT/<run name>`` (its name is made from the settings that vary,
e.g. ``lr=0.05_seed=0``), so a sweep is resumable for free: a rerun skips runs that are complete, resumes
interrupted ones from their last checkpoint (the training loop's own resume) and starts the rest. After every
finished run the table ``OUT/sweep.csv`` and ``OUT/sweep.json`` is rewritten: one row per run with its status
(``complete``, ``skipped`` when it was complete before, ``diverged``, ``failed``, ``interrupted``, ``pending``),
the settings that vary, every scalar of its ``summary.json`` and the error line of a run that failed. A failed
run never stops the others.

Backends: ``local`` (default) runs ``jobs`` runs at a time in worker processes, each with
``cores // jobs`` torch threads so the pool does not oversubscribe the CPU; ``ray`` submits each run as a Ray
task declaring ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs, on a local Ray instance or on the cluster at
``address`` (run directories must then be on a filesystem every node sees).
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from genlab.errors import ConfigError, GenlabError, error_line
from genlab.sweep_file import Sweep, SweepRun, parse_sweep, read_sweep, run_name  # noqa: F401  (the sweep API)
from genlab.train.loop import StopOnSignals, TrainingInterrupted
from genlab.jsonio import jsonable, write_json_atomic, write_text_atomic

BACKENDS = ("local", "ray")
# summary.json entries left out of the table (not figures of the run)
_NOT_IN_TABLE = ("data_fingerprint", "message", "sgld_bound_note", "sgld_heldout", "sgld_bound")


# ------------------------------------------------------------------------------------------- one run
def run_is_complete(path: Path, settings: dict[str, Any]) -> bool:
    """True if ``path`` holds a complete run with exactly these trajectory settings and length."""
    from genlab.config import TrainConfig, validate_config
    from genlab.train.checkpoint import load_state_dict
    from genlab.train.run import read_run_config

    summary = path / "summary.json"
    if not summary.is_file() or not (path / "model.safetensors").is_file():
        return False
    try:
        if json.loads(summary.read_text(encoding="utf-8")).get("status") != "complete":
            return False
        old, new = read_run_config(path), validate_config(TrainConfig, settings)
        load_state_dict(path / "model.safetensors")  # damaged: not complete (its rerun reports the damage)
    except (GenlabError, OSError, json.JSONDecodeError):
        return False
    return (old.trajectory_fields() == new.trajectory_fields()
            and (old.run.epochs, old.run.steps) == (new.run.epochs, new.run.steps))


def _summary_row(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in summary.items()
            if k not in _NOT_IN_TABLE and k != "status" and (v is None or isinstance(v, (int, float, str, bool)))}


def execute_run(name: str, settings: dict[str, Any], path: str, threads: int) -> dict[str, Any]:
    """Train one run of a sweep into ``path`` (resuming it if interrupted); returns its table row.

    Never raises for a run's own failure: divergence, bad settings, missing data or a crash become a row with
    status ``diverged`` / ``failed`` and the error line, so one bad run never loses the others. This is what a
    local worker process or a Ray task executes.
    """
    import torch

    from genlab.config import TrainConfig, validate_config
    from genlab.errors import DivergenceError
    from genlab.train import train

    torch.set_num_threads(max(1, int(threads)))
    row: dict[str, Any] = {"run": name, "status": "failed", "error": None}
    t0 = time.perf_counter()
    try:
        train(validate_config(TrainConfig, settings), path, quiet=True)
        row["status"] = "complete"
    except DivergenceError as err:
        row.update(status="diverged", error=str(err))
    except TrainingInterrupted as err:
        row.update(status="interrupted", error=str(err))
    except GenlabError as err:
        row["error"] = str(err)
    except Exception as err:  # noqa: BLE001 -- a crash of one run is reported in its row, the sweep goes on
        row["error"] = error_line(err)
    row["sweep_time_s"] = time.perf_counter() - t0
    row["torch_threads"] = torch.get_num_threads()
    row.update(_summary_row(Path(path)))
    return row


def _init_worker(parent: int) -> None:
    # idle pool workers must not die of the terminal's Ctrl-C: a training run installs its own handler
    # (stop at the next step boundary, checkpoint), and the parent decides what happens next
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_die_with_parent, args=(parent,), daemon=True, name="genlab-parent-watch").start()


_BUSY = threading.Event()  # set while this worker process trains a run


def _die_with_parent(parent: int, every: float = 0.5) -> None:
    """A worker whose sweep process is gone (killed with SIGKILL, say) stops too, instead of training on and
    racing the rerun: a run in progress gets SIGTERM, as a scheduler would send (it checkpoints at the next step
    boundary), and the worker exits once no run is in progress."""
    while os.getppid() == parent:
        time.sleep(every)
    if _BUSY.is_set():
        os.kill(os.getpid(), signal.SIGTERM)
    while _BUSY.is_set():
        time.sleep(every)
    os._exit(0)  # an idle worker would wait for tasks from the dead parent forever


def _execute_in_worker(name: str, settings: dict[str, Any], path: str, threads: int) -> dict[str, Any]:
    _BUSY.set()
    try:
        return execute_run(name, settings, path, threads)
    finally:
        _BUSY.clear()


# ---------------------------------------------------------------------------------------------- table
class SweepTable:
    """The sweep's table, rewritten (atomically) as ``OUT/sweep.csv`` and ``OUT/sweep.json`` after every run."""

    def __init__(self, sweep: Sweep, out: Path, backend: str, jobs: int):
        self.sweep, self.out, self.backend, self.jobs = sweep, out, backend, jobs
        self.rows = {r.name: {"run": r.name, "status": "pending", **r.varying, "error": None} for r in sweep.runs}
        self.t0 = time.perf_counter()

    def set(self, run: SweepRun, row: dict[str, Any]) -> None:
        """Record a run's row (its varying settings are kept); :meth:`write` saves the table."""
        self.rows[run.name] = {"run": run.name, "status": row.get("status"), **run.varying,
                               **{k: v for k, v in row.items() if k not in ("run", "status")}}

    def counts(self) -> dict[str, int]:
        """How many runs have each status."""
        from collections import Counter

        return dict(Counter(row["status"] for row in self.rows.values()))

    def columns(self) -> list[str]:
        """``run``, ``status``, the varying settings, the summary figures (first-seen order), ``error`` last."""
        cols: list[str] = []
        for row in self.rows.values():
            cols += [k for k in row if k not in cols and k != "error"]
        return cols + ["error"]

    def write(self) -> dict[str, Any]:
        """Rewrite the CSV and JSON tables; returns the JSON table as written."""
        self.out.mkdir(parents=True, exist_ok=True)
        rows = [self.rows[r.name] for r in self.sweep.runs]
        table = jsonable({"sweep": self.sweep.name, "out": str(self.out), "backend": self.backend, "jobs": self.jobs,
                          "wall_time_s": time.perf_counter() - self.t0, "counts": self.counts(), "runs": rows})
        write_json_atomic(self.out / "sweep.json", table)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns(), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else json.dumps(v) if isinstance(v, (dict, list)) else v)
                             for k, v in jsonable(row).items()})
        write_text_atomic(self.out / "sweep.csv", buf.getvalue())
        return table


# -------------------------------------------------------------------------------------------- backends
def cpu_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run_local(todo: list[tuple[SweepRun, Path]], jobs: int, threads: int, done: Callable) -> bool:
    """Run ``todo`` on ``jobs`` worker processes (in this process when ``jobs`` is 1); False if interrupted."""
    if jobs == 1:  # in this process: Ctrl-C reaches the training loop's own handler directly
        import torch

        before = torch.get_num_threads()
        try:
            for run, path in todo:
                row = execute_run(run.name, run.settings, str(path), threads)
                done(run, row)
                if row["status"] == "interrupted":
                    return False
        finally:
            torch.set_num_threads(before)
        return True
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # spawn, not fork: forking a process that already holds torch's thread pools is unsafe
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))
    futures = {pool.submit(_execute_in_worker, run.name, run.settings, str(path), threads): run
               for run, path in todo}
    pending = set(futures)
    interrupted = False
    try:
        with StopOnSignals() as stop:  # Ctrl-C / SIGTERM: stop submitting, let running runs checkpoint
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in finished:
                    interrupted |= _collect(f, futures[f], done) == "interrupted"
                if stop.requested and not interrupted:
                    interrupted = True
                    for f in pending:
                        f.cancel()
                    for proc in list(getattr(pool, "_processes", {}).values()):  # runs stop at a step boundary
                        try:
                            os.kill(proc.pid, signal.SIGINT)
                        except ProcessLookupError:
                            pass
                    pending = {f for f in pending if not f.cancelled()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return not interrupted


def _collect(future, run: SweepRun, done: Callable) -> str:
    """Record a finished future's row; returns its status."""
    try:
        row = future.result()
    except Exception as err:  # noqa: BLE001 -- a worker that died (out of memory, killed): that run failed
        row = {"run": run.name, "status": "failed", "error": error_line(err)}
    done(run, row)
    return row["status"]


def _run_ray(todo: list[tuple[SweepRun, Path]], address: str | None, jobs: int | None, cpus: float, gpus: float,
             done: Callable) -> bool:
    """Run ``todo`` as Ray tasks (each declaring ``cpus`` CPUs and ``gpus`` GPUs); False if interrupted."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs the ray package; install it with pip install 'genlab[ray]' "
                          "(allowed backends without it: local)") from None
    env = {k: os.environ[k] for k in ("GENLAB_DATA", "GENLAB_NO_DOWNLOAD", "GENLAB_DATA_MIRROR") if k in os.environ}
    init = dict(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env} if env else None)
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address:
                ray.init(address=address, **init)
            else:  # a local Ray instance with the CPUs the sweep may use
                ray.init(num_cpus=int(max(cpus, (jobs or cpu_cores()) * cpus)), **init)
        except Exception as err:  # noqa: BLE001 -- unreachable cluster, bad address: one line
            raise ConfigError(f"--address {address}: cannot connect to Ray ({' '.join(str(err).split())})") \
                if address else ConfigError(f"cannot start a local Ray instance ({err})") from None
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(execute_run)
    refs = {task.remote(run.name, run.settings, str(path), max(1, int(cpus))): run for run, path in todo}
    interrupted = False
    try:
        with StopOnSignals() as stop:  # Ctrl-C / SIGTERM: stop submitting, let running runs checkpoint
            pending = list(refs)
            while pending:
                finished, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                for ref in finished:
                    try:
                        row = ray.get(ref)
                    except Exception as err:  # noqa: BLE001 -- a task whose worker died
                        row = {"run": refs[ref].name, "status": "failed", "error": error_line(err)[:500]}
                    done(refs[ref], row)
                    interrupted |= row.get("status") == "interrupted"
                if stop.requested and not interrupted:
                    interrupted = True
                    for ref in pending:  # running tasks get a KeyboardInterrupt: their run keeps its checkpoint
                        ray.cancel(ref)
    finally:
        if started_here:
            ray.shutdown()
    return not interrupted


# ------------------------------------------------------------------------------------------ the sweep
def run_sweep(sweep: Sweep | str | Path, out: str | Path | None = None, *, jobs: int | None = None,
              backend: str = "local", address: str | None = None, cpus_per_run: float | None = None,
              gpus_per_run: float | None = None, quiet: bool = False) -> dict[str, Any]:
    """Run every run of a sweep that is not complete yet; returns the table (also in ``OUT/sweep.json``).

    Args:
        sweep: a :class:`Sweep` or the path of a sweep file.
        out: output directory (default: the file's ``[sweep] out``, else ``runs/NAME``).
        jobs: local pool size (default: the file's, else 1); with Ray, the CPUs of a local Ray instance
            in runs (ignored when connecting to ``address``).
        backend: ``local`` (process pool) or ``ray``.
        address: Ray cluster address (``ray`` backend; default: start a local instance).
        cpus_per_run: CPUs each Ray task declares, and the torch threads of each run on either backend
            (default: the file's; else 1 on Ray and cores // jobs locally). Runs with the same threads give
            bit-identical results on every backend; another thread count changes the floating-point
            reduction order, and long runs can drift apart from there.
        gpus_per_run: GPUs each Ray task declares (default: the file's, else 0).
        quiet: no progress lines.

    Raises:
        TrainingInterrupted: the sweep was stopped (Ctrl-C / SIGTERM); finished runs are in the table and
            running ones kept their checkpoints, so rerunning completes only the missing runs.
    """
    if not isinstance(sweep, Sweep):
        sweep = read_sweep(sweep)
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    jobs = jobs if jobs is not None else sweep.jobs
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1 (got {jobs})")
    cpus = cpus_per_run if cpus_per_run is not None else sweep.cpus_per_run  # None: not fixed
    gpus = gpus_per_run if gpus_per_run is not None else sweep.gpus_per_run
    if (cpus is not None and cpus <= 0) or gpus < 0:
        raise ConfigError(f"--cpus-per-run must be > 0 and --gpus-per-run >= 0 (got {cpus}, {gpus})")
    out = Path(out or sweep.out or Path("runs") / sweep.name).absolute()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "sweep-spec.json", {"sweep": sweep.name, "runs": [
        {"name": r.name, "settings": r.settings} for r in sweep.runs]})
    table = SweepTable(sweep, out, backend, jobs or 1)
    todo = []
    for run in sweep.runs:
        path = out / run.name
        if run_is_complete(path, run.settings):
            table.set(run, {"status": "skipped", **_summary_row(path), "error": None})
        else:
            todo.append((run, path))
    table.write()
    total, finished = len(sweep.runs), [len(sweep.runs) - len(todo)]
    if not quiet:
        print(f"sweep {sweep.name}: {total} runs, {total - len(todo)} already complete, {len(todo)} to run "
              f"({backend}{'' if backend == 'ray' else f', {jobs or 1} at a time'}) -> {out}", file=sys.stderr)

    def done(run: SweepRun, row: dict[str, Any]) -> None:
        table.set(run, row)
        table.write()
        finished[0] += 1
        if not quiet:
            acc = row.get("test_accuracy")
            fig = f", test acc {acc:.4f}" if isinstance(acc, float) else ""
            err = f": {row['error']}" if row.get("error") and row["status"] != "interrupted" else ""
            print(f"[{finished[0]}/{total}] {run.name}: {row['status']}{fig} "
                  f"({row.get('sweep_time_s', 0):.1f} s){err}", file=sys.stderr)

    if backend == "local":
        n_jobs = jobs or 1
        threads = max(1, int(cpus)) if cpus is not None else max(1, cpu_cores() // n_jobs)
        complete = _run_local(todo, n_jobs, threads, done)
    else:
        complete = _run_ray(todo, address, jobs, cpus if cpus is not None else 1, gpus, done)
    result = table.write()
    if not complete:
        counts = table.counts()
        raise TrainingInterrupted(f"sweep interrupted: {counts.get('complete', 0) + counts.get('skipped', 0)} of "
                                  f"{total} runs complete, table in {out / 'sweep.csv'}; rerun the same command to "
                                  f"complete only the missing runs")
    return result
