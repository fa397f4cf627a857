"""A run directory belongs to one process at a time, and completion is crash-consistent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from genlab.cli import main
from genlab.train.run_dir import RunDir, RunLock

TINY = ["--dataset", "digits", "--n-train", "200", "--width", "8", "--quiet"]


def _genlab(*args):
    return subprocess.Popen([sys.executable, "-m", "genlab.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, seconds=60.0):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < seconds, f"{path} never appeared"
        time.sleep(0.05)


def test_a_held_run_directory_is_refused_with_its_holder(tmp_path, capsys):
    out = tmp_path / "r"
    with RunLock(RunDir(out)):
        code = main(["train", "--out", str(out), *TINY, "--steps", "2"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("genlab: error: ") and "is in use by process" in err
        assert f"process {os.getpid()}" in err and "\n" not in err
    assert main(["train", "--out", str(out), *TINY, "--steps", "2"]) == 0
    assert not (out / RunLock.NAME).exists()       # released, and removed, when the run stops


def test_two_processes_on_one_run_directory(tmp_path):
    out = tmp_path / "r"
    first = _genlab("train", "--out", str(out), *TINY, "--steps", "400", "--lr", "0.05")
    _wait_for(out / RunLock.NAME, first)
    second = subprocess.run([sys.executable, "-m", "genlab.cli", "train", "--out", str(out), *TINY, "--steps",
                             "400", "--lr", "0.2"], capture_output=True, text=True)
    assert second.returncode == 2 and "is in use by process" in second.stderr, second.stderr
    assert first.wait(timeout=300) == 0, first.communicate()
    config = json.loads((out / "config.json").read_text())
    assert config["optimizer"]["lr"] == 0.05               # the first run's, untouched by the second
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))                      # no record written twice


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "r"
    proc = _genlab("train", "--out", str(out), *TINY, "--steps", "3000", "--checkpoint-every", "50")
    _wait_for(out / "checkpoint.safetensors", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (out / RunLock.NAME).exists()                   # the file stays; the lock died with its process
    again = subprocess.run([sys.executable, "-m", "genlab.cli", "train", "--out", str(out), *TINY, "--steps",
                            "3000", "--checkpoint-every", "50"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "summary.json").read_text())["status"] == "complete"


def test_a_run_killed_between_model_and_summary_is_repaired(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), *TINY, "--steps", "4", "--checkpoint-every", "2"]) == 0
    before = json.loads((out / "summary.json").read_text())
    (out / "summary.json").unlink()                         # as a kill right after model.safetensors leaves it
    assert main(["train", "--out", str(out), *TINY[:-1], "--steps", "4", "--checkpoint-every", "2"]) == 0
    assert "summary was missing and is written now" in capsys.readouterr().err
    after = json.loads((out / "summary.json").read_text())
    assert after["status"] == "complete" and after["steps"] == 4
    assert {k: after[k] for k in ("train_loss", "test_accuracy", "steps")} == {
        k: before[k] for k in ("train_loss", "test_accuracy", "steps")}


def test_a_refused_run_leaves_no_directory_behind(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), "--dataset", "digits", "--width", "1048576", "--depth", "8"]) == 2
    assert not out.exists()
    assert main(["train", "--out", "", *TINY]) == 2
    assert "--out is empty" in capsys.readouterr().err


def test_sigterm_during_start_up_exits_130_with_a_message(tmp_path):
    proc = _genlab("train", "--out", str(tmp_path / "r"), "--dataset", "digits", "--steps", "100000", "--quiet")
    time.sleep(1.0)                       # inside start-up (torch import, data) or, on a fast machine, the loop
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err


def test_bare_genlab_names_what_is_missing(capsys):
    assert main([]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "genlab: error: no command given (see 'genlab --help')"
