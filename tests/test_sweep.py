"""Sweeps: expansion of the file, skip / resume / failure isolation, the local pool, Ray, and kill-and-rerun."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from genlab.cli import main
from genlab.errors import ConfigError
from genlab.sweep import parse_sweep, read_sweep, run_name, run_sweep

BASE = {"dataset": "mnist1d", "model": "mlp", "width": 16, "n_train": 300, "steps": 20, "batch_size": 50}


def write_toml(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_grid_times_runs_expansion_and_names():
    sweep = parse_sweep({"base": BASE, "grid": {"lr": [0.05, 0.1], "seed": [0, 1]},
                         "runs": [{"optimizer": "sgd"}, {"optimizer": "adam", "lr": 0.001}]})
    # the grid multiplies each [[runs]] entry (and overrides the entry's lr)
    assert len(sweep.runs) == 8
    names = [r.name for r in sweep.runs]
    assert names[0] == "optimizer=sgd_lr=0.05_seed=0" and names[-1] == "optimizer=adam_lr=0.1_seed=1"
    assert len(set(names)) == 8
    assert all(r.settings["n_train"] == 300 for r in sweep.runs)
    assert sweep.runs[5].settings == {**BASE, "optimizer": "adam", "lr": 0.05, "seed": 1}
    assert run_name({}) == "run"
    long = run_name({"model_options": {"a" * 50: 1, "b" * 50: 2}})
    assert len(long) <= 80 and long != run_name({"model_options": {"a" * 50: 1, "b" * 50: 3}})


@pytest.mark.parametrize("name", ["..", ".", "../escape", "/abs/path", "a/../../b"])
def test_run_names_stay_inside_the_sweep_directory(name):
    sweep = parse_sweep({"base": BASE, "runs": [{"name": name}]})
    (run,) = sweep.runs
    assert "/" not in run.name and run.name not in (".", "..")


def test_sectioned_base_meets_a_flat_grid():
    """A [base.optimizer] table and grid keys are one set of settings: a grid over lr varies the table's lr, a
    grid over the optimizer makes a setting only the table's optimizer has an error."""
    base = {**BASE, "optimizer": {"name": "ivon", "ess": 300.0}}
    sweep = parse_sweep({"base": base, "grid": {"lr": [0.05, 0.1]}})
    assert [r.settings["lr"] for r in sweep.runs] == [0.05, 0.1]
    assert all(r.settings["optimizer"] == "ivon" and r.settings["ess"] == 300.0 for r in sweep.runs)
    with pytest.raises(ConfigError, match="ess: a setting of optimizer ivon"):
        parse_sweep({"base": base, "grid": {"optimizer": ["sgd", "ivon"]}})


@pytest.mark.parametrize("data, needle", [
    ({"base": BASE, "gird": {}}, "unknown section 'gird'; allowed: sweep, base, grid, runs"),
    ({"base": BASE, "grid": {"lr": []}}, "[grid] lr must be a non-empty list"),
    ({"base": BASE, "grid": {"lr": 0.1}}, "[grid] lr must be a non-empty list"),
    ({"base": BASE, "grid": {"lr": [0.1, -1.0]}}, "run lr=-1.0: bad setting lr: Input should be greater than 0"),
    ({"base": {**BASE, "colour": 3}}, "colour"),
    ({"sweep": {"jobz": 2}, "base": BASE}, "unknown [sweep] key 'jobz'"),
    ({"sweep": {"jobs": 0}, "base": BASE}, "jobs must be an integer >= 1"),
    ({"base": BASE, "runs": [{"name": "a"}, {"name": "a"}]}, "both named 'a'"),
    ({"base": BASE, "runs": {"lr": 1}}, "[runs] must be an array of tables"),
])
def test_bad_sweep_files(data, needle):
    with pytest.raises(ConfigError) as err:
        parse_sweep(data)
    assert needle in str(err.value)


def test_bad_sweep_file_on_the_command_line(capsys, tmp_path):
    bad = write_toml(tmp_path / "bad.toml", "[grid\nlr = [1]\n")
    assert main(["sweep", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genlab: error: config file") and "not valid TOML" in err[0]
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    good = write_toml(tmp_path / "s.toml", '[base]\ndataset = "mnist1d"\n')
    assert main(["sweep", str(good), "--backend", "slurm", "--out", str(tmp_path / "o")]) == 2
    assert "unknown backend 'slurm'; allowed: local, ray" in capsys.readouterr().err


def test_skip_complete_extend_and_failures_reported(tmp_path, capsys):
    # one run diverges; the others complete and the table reports all of them
    sweep = parse_sweep({"base": {**BASE, "optimizer": "gd", "n_train": 200}, "grid": {"lr": [0.1, 1e12]}})
    table = run_sweep(sweep, tmp_path, jobs=1, quiet=True)
    rows = {r["run"]: r for r in table["runs"]}
    assert rows["lr=0.1"]["status"] == "complete" and rows["lr=0.1"]["test_accuracy"] > 0
    assert rows["lr=1000000000000.0"]["status"] == "diverged"
    assert "non-finite" in rows["lr=1000000000000.0"]["error"]
    csv_lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert csv_lines[0].startswith("run,status,lr,") and csv_lines[0].endswith(",error") and len(csv_lines) == 3
    # rerun: the complete run is skipped, untouched; the diverged one is tried again (it resumes and diverges)
    stamp = os.stat(tmp_path / "lr=0.1" / "summary.json").st_mtime_ns
    table = run_sweep(sweep, tmp_path, jobs=1, quiet=True)
    assert table["counts"] == {"skipped": 1, "diverged": 1}
    assert os.stat(tmp_path / "lr=0.1" / "summary.json").st_mtime_ns == stamp
    # lengthening the runs in the file extends them from their checkpoints instead of starting again
    longer = parse_sweep({"base": {**BASE, "optimizer": "gd", "n_train": 200, "steps": 30}, "grid": {"lr": [0.1]}})
    table = run_sweep(longer, tmp_path, jobs=1, quiet=True)
    assert table["runs"][0]["status"] == "complete" and table["runs"][0]["steps"] == 30
    metrics = [json.loads(line) for line in (tmp_path / "lr=0.1" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics][0] == 0 and len({m["step"] for m in metrics}) == len(metrics)


def test_cli_exit_status_when_a_run_fails(tmp_path, capsys):
    f = write_toml(tmp_path / "s.toml", '[base]\ndataset = "mnist1d"\nmodel = "mlp"\nwidth = 8\nn_train = 100\n'
                   'steps = 5\noptimizer = "gd"\n[grid]\nlr = [0.1, 1e12]\n')
    assert main(["sweep", str(f), "--out", str(tmp_path / "o"), "-q"]) == 1
    out, err = capsys.readouterr()
    assert "1 complete, 1 diverged" in out
    assert err.strip().startswith("genlab: error: 1 of 2 runs failed or diverged")


def test_local_pool_matches_in_process_runs(tmp_path):
    # one torch thread per run on both: the same floating-point reduction order, bit-identical results
    sweep = parse_sweep({"sweep": {"cpus_per_run": 1}, "base": BASE, "grid": {"seed": [0, 1, 2]}})
    one = run_sweep(sweep, tmp_path / "one", jobs=1, quiet=True)
    two = run_sweep(sweep, tmp_path / "two", jobs=2, quiet=True)
    assert two["counts"] == {"complete": 3} and two["jobs"] == 2
    assert {r["torch_threads"] for r in one["runs"] + two["runs"]} == {1}
    for a, b in zip(one["runs"], two["runs"]):  # same seeds, same trajectories, whichever process ran them
        assert a["run"] == b["run"] and a["train_loss"] == b["train_loss"]


def test_ray_backend_on_a_local_instance(tmp_path):
    pytest.importorskip("ray", reason="ray not installed (pip install 'genlab[ray]')")
    sweep = parse_sweep({"base": BASE, "grid": {"seed": [0, 1]}})
    local = run_sweep(sweep, tmp_path / "local", jobs=1, quiet=True)
    table = run_sweep(sweep, tmp_path / "ray", backend="ray", jobs=2, cpus_per_run=1, quiet=True)
    assert table["backend"] == "ray" and table["counts"] == {"complete": 2}
    assert [r["train_loss"] for r in table["runs"]] == [r["train_loss"] for r in local["runs"]]
    again = run_sweep(sweep, tmp_path / "ray", backend="ray", jobs=2, quiet=True)
    assert again["counts"] == {"skipped": 2}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_killed_sweep_rerun_completes_only_the_missing_runs(tmp_path, how):
    f = write_toml(tmp_path / "s.toml", '[base]\ndataset = "mnist1d"\nmodel = "mlp"\nn_train = 2000\n'
                   'steps = 1500\nbatch_size = 32\neval_every = 100\n[grid]\nseed = [0, 1, 2]\n')
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "genlab.cli", "sweep", str(f), "--out", str(out), "--jobs", "1"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the first run to finish, then kill the sweep
        try:
            if json.loads((out / "sweep.json").read_text())["counts"].get("complete", 0) >= 1:
                break
        except (OSError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    else:
        pytest.fail("the first run did not finish")
    time.sleep(0.3)  # into the second run
    os.killpg(proc.pid, getattr(signal, how))
    _, err = proc.communicate(timeout=60)
    if how == "SIGINT":  # stops at a step boundary: exit 130, one line, the running run keeps its checkpoint
        assert proc.returncode == 130, err
        assert "sweep interrupted" in err.decode()
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/summary.json")
                   if json.loads(p.read_text())["status"] == "complete"}
    assert 1 <= len(done_before) < 3
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done_before)} already complete, {3 - len(done_before)} to run" in rerun.stderr
    table = json.loads((out / "sweep.json").read_text())
    assert table["counts"].get("skipped") == len(done_before)
    assert sum(table["counts"].values()) == 3 and set(table["counts"]) <= {"skipped", "complete"}
    for name, stamp in done_before.items():  # untouched
        assert (out / name / "summary.json").stat().st_mtime_ns == stamp
    # the interrupted run resumed from its checkpoint: its metrics start at step 0 and have no repeated steps
    for row in table["runs"]:
        steps = [json.loads(line)["step"] for line in (out / row["run"] / "metrics.jsonl").read_text().splitlines()]
        assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == 1500


def test_read_sweep_defaults_name_to_file_stem(tmp_path):
    f = write_toml(tmp_path / "lr-grid.toml", '[base]\ndataset = "mnist1d"\n[grid]\nlr = [0.1, 0.2]\n')
    sweep = read_sweep(f)
    assert sweep.name == "lr-grid" and [r.name for r in sweep.runs] == ["lr=0.1", "lr=0.2"]


def _parent_of(pid: int) -> int | None:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _held(run_dir) -> bool:
    from genlab.errors import CheckpointError
    from genlab.train.run_dir import RunDir, RunLock

    try:
        with RunLock(RunDir(run_dir)):
            return False
    except CheckpointError:
        return True


def test_workers_die_with_a_killed_sweep(tmp_path):
    """SIGKILL of the sweep process alone (not its group): its pool workers notice and stop (a run in its loop
    checkpoints at a step boundary), instead of training on and racing a rerun: both runs' locks come free."""
    f = write_toml(tmp_path / "s.toml", '[base]\ndataset = "mnist1d"\nmodel = "mlp"\nn_train = 2000\n'
                   'steps = 100000\nbatch_size = 32\neval_every = 100\ncheckpoint_every = 50\n[grid]\nseed = [0, 1]\n')
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "genlab.cli", "sweep", str(f), "--out", str(out), "--jobs", "2"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = [out / f"seed={s}" for s in (0, 1)]
    deadline = time.time() + 180
    while not all((r / "checkpoint.safetensors").exists() for r in runs):  # both in their training loops
        assert time.time() < deadline and proc.poll() is None, "the runs did not start"
        time.sleep(0.1)
    assert all(_held(r) for r in runs)
    workers = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent_of(int(p)) == proc.pid]
    assert len(workers) >= 2
    proc.kill()                                   # the sweep process only: its workers are orphaned
    proc.wait(timeout=30)
    deadline = time.time() + 60
    while any(_held(r) for r in runs):
        assert time.time() < deadline, "orphaned workers kept training"
        time.sleep(0.2)
    for r in runs:                                # each stopped cleanly at a step boundary
        assert json.loads((r / "summary.json").read_text())["status"] == "interrupted"
    deadline = time.time() + 30                   # and the workers themselves are gone, not idling orphaned
    while any(os.path.exists(f"/proc/{pid}") for pid in workers):
        assert time.time() < deadline, f"worker processes left running: {workers}"
        time.sleep(0.2)
