"""Kill-and-resume stress: SIGKILL a training run at many points, including inside checkpoint writes, and check
that every run, rerun to completion, ends bit-identical to one that was never interrupted.

Setting: ``genlab train`` on MNIST-1D, an MLP of width 512 and depth 3 (about 0.6 M parameters) with Adam,
300 steps, a checkpoint after *every* step (a 7 MB file each time), evaluation every 25 steps. ``RUNS`` run
directories; each is started and killed with SIGKILL ``KILLS_PER_RUN`` times, then run once more to completion.
The kills cycle through three kinds, the moment drawn from a seeded generator: in start-up (a uniform delay
after the process starts, before the loop), inside the loop (once the checkpoint has advanced, after a further
uniform delay of up to 1 s), and inside a checkpoint write (the instant ``checkpoint.safetensors.tmp``
appears). Each kill records its kind, the step the checkpoint held afterwards and whether a write was in
flight. Targets: at least 50 kills, at least 10 inside a write; every run's final ``model.safetensors`` equal
tensor for tensor to the uninterrupted reference; every run's ``metrics.jsonl`` holds each evaluation step
exactly once.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, record

RUNS, KILLS_PER_RUN, SEED = 10, 6, 0
ARGS = ["--dataset", "mnist1d", "--model", "mlp", "--width", "512", "--depth", "3", "--optimizer", "adam",
        "--lr", "0.001", "--batch-size", "64", "--steps", "300", "--checkpoint-every", "1", "--eval-every", "25",
        "--seed", "3", "--quiet"]


def _train(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "genlab.cli", "train", "--out", str(out), *ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _step_of(out: Path) -> int | None:
    """The step the run's checkpoint holds (``None``: none yet, or one being replaced as we look)."""
    from genlab.errors import CheckpointError
    from genlab.train.checkpoint import read_checkpoint_metadata

    ck = out / "checkpoint.safetensors"
    try:
        return read_checkpoint_metadata(ck)["step"] if ck.is_file() else None
    except (CheckpointError, RuntimeError, OSError):
        return None


def _intact(out: Path) -> bool | None:
    """Whether the checkpoint a kill left passes its checksum (``None``: there is none)."""
    from genlab.errors import CheckpointError
    from genlab.train.checkpoint import load_state_dict

    ck = out / "checkpoint.safetensors"
    if not ck.is_file():
        return None
    try:
        load_state_dict(ck)
        return True
    except CheckpointError:
        return False


def _same_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _wait(condition, proc, seconds: float = 300.0) -> bool:
    """Poll ``condition`` until true (True) or the process ends (False)."""
    deadline = time.time() + seconds
    while not condition():
        if proc.poll() is not None or time.time() > deadline:
            return False
        time.sleep(0.002)
    return True


def _kill(out: Path, kind: str, rng: random.Random) -> dict:
    before = _step_of(out)
    proc = _train(out)
    if kind == "start-up":
        time.sleep(rng.uniform(0.3, 2.0))
        reached = proc.poll() is None
    elif kind == "loop":
        reached = _wait(lambda: (_step_of(out) or -1) > (before if before is not None else -1), proc)
        time.sleep(rng.uniform(0.0, 1.0))
    else:  # inside a write: the instant its temporary file exists
        reached = _wait(lambda: (out / "checkpoint.safetensors.tmp").exists(), proc)
    writing = (out / "checkpoint.safetensors.tmp").exists()
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return {"kind": kind, "reached": reached and not finished, "during_write": writing and not finished,
            "finished_before_kill": finished, "checkpoint_step": _step_of(out), "checkpoint_intact": _intact(out)}


def main() -> dict:
    rng = random.Random(SEED)
    kinds = ("start-up", "loop", "write")
    kills, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        reference = tmp / "reference"
        proc = _train(reference)
        assert proc.wait() == 0, proc.stderr.read()
        reference_s = time.perf_counter() - t0
        for r in range(RUNS):
            out = tmp / f"run{r}"
            for k in range(KILLS_PER_RUN):
                kills.append({"run": r, **_kill(out, kinds[(r * KILLS_PER_RUN + k) % 3], rng)})
            proc = _train(out)
            code = proc.wait()
            steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
            runs.append({"run": r, "exit": code, "identical": code == 0 and _same_weights(
                out / "model.safetensors", reference / "model.safetensors"),
                "steps_once": steps == sorted(set(steps)) and steps[-1] == 300})
    real_kills = [k for k in kills if not k["finished_before_kill"]]
    by_kind = {kind: sum(k["kind"] == kind for k in real_kills) for kind in kinds}
    figures = {
        "kills": len(real_kills), "kills_by_kind": by_kind,
        "kills_during_checkpoint_write": sum(k["during_write"] for k in real_kills),
        "checkpoints_damaged_by_a_kill": sum(k["checkpoint_intact"] is False for k in real_kills),
        "kills_before_first_checkpoint": sum(k["checkpoint_step"] is None for k in real_kills),
        "runs": len(runs), "runs_bit_identical": sum(r["identical"] for r in runs),
        "runs_metrics_each_step_once": sum(r["steps_once"] for r in runs),
        "reference_wall_s": round(reference_s, 1), "per_run": runs,
    }
    # each kill's kind, timing and outcome: beside the results (too long for BENCHMARKS.md)
    (RESULTS / "kill_resume_stress.kills.json").write_text(json.dumps(kills, indent=1) + "\n")
    targets = {
        f"at least 50 SIGKILLs at random points (got {len(real_kills)}, "
        f"{figures['kills_during_checkpoint_write']} during a checkpoint write)": len(real_kills) >= 50,
        f"at least 10 kills inside a checkpoint write (got {figures['kills_during_checkpoint_write']})":
            figures["kills_during_checkpoint_write"] >= 10,
        f"no kill leaves a damaged checkpoint (got {figures['checkpoints_damaged_by_a_kill']})":
            figures["checkpoints_damaged_by_a_kill"] == 0,
        f"every run bit-identical to the uninterrupted one ({figures['runs_bit_identical']}/{len(runs)})":
            figures["runs_bit_identical"] == len(runs),
        f"every run's metrics hold each step once ({figures['runs_metrics_each_step_once']}/{len(runs)})":
            figures["runs_metrics_each_step_once"] == len(runs),
    }
    return record("kill_resume_stress", figures, targets)


if __name__ == "__main__":
    result = main()
    print(json.dumps({k: v for k, v in result["figures"].items() if not k.startswith("per_")}, indent=2))
    print(json.dumps(result["targets"], indent=2))
