"""The training loop: run directory, exact resume, divergence, GD semantics, load_run."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import Crash
import torch
from safetensors.torch import load_file

import genlab
from genlab.config import TrainConfig
from genlab.errors import CheckpointError, DivergenceError
from genlab.train import Callback, batch_indices, load_run, train
from genlab.train.checkpoint import read_checkpoint_metadata

SMALL = dict(dataset="mnist1d", n_train=400, model="mlp", width=32, dropout=0.1, optimizer="sgd", lr=0.05,
             momentum=0.9, batch_size=64, seed=3, eval_batch_size=128)


def final_params(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def assert_same_params(a: Path, b: Path) -> None:
    pa, pb = final_params(a), final_params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k




def test_run_directory_contents(tmp_path):
    run = train(TrainConfig(**SMALL, epochs=2), tmp_path / "r", quiet=True)
    for name in ("config.json", "env.json", "metrics.jsonl", "summary.json", "model.safetensors",
                 "checkpoint.safetensors"):
        assert (tmp_path / "r" / name).is_file(), name
    env = json.loads((tmp_path / "r" / "env.json").read_text())
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"  # --device auto
    assert env["seed"] == 3 and env["torch"] == torch.__version__ and env["device"] == expected_device
    summary = run.summary
    assert summary["status"] == "complete" and summary["steps"] == 2 * math.ceil(400 / 64)
    steps = [r["step"] for r in run.metrics]
    assert steps == [0, 7, 14]  # initial evaluation, then once per epoch
    # the summary's figures are those of the final model, recomputed here independently
    loaded = load_run(tmp_path / "r")
    ev = loaded.test_objective.evaluate()
    assert ev["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-9)
    assert ev["loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    assert isinstance(loaded.model, torch.nn.Module) and loaded.data.x_train.shape == (400, 40)
    assert loaded.objective.n == 400 and loaded.config.optimizer.lr == 0.05


def test_crash_then_resume_matches_uninterrupted(tmp_path):
    cfg = TrainConfig(**SMALL, steps=30, checkpoint_every=10, eval_every=5)
    train(cfg, tmp_path / "straight", quiet=True)
    with pytest.raises(Crash.Boom):
        train(cfg, tmp_path / "crashed", callbacks=[Crash(at=25)], quiet=True)
    assert read_checkpoint_metadata(tmp_path / "crashed" / "checkpoint.safetensors")["step"] == 20
    run = train(cfg, tmp_path / "crashed", quiet=True)
    assert_same_params(tmp_path / "straight", tmp_path / "crashed")
    steps = [r["step"] for r in run.metrics]
    assert steps == sorted(set(steps)) == [0, 5, 10, 15, 20, 25, 30]  # nothing lost, nothing logged twice
    straight = load_run(tmp_path / "straight").metrics
    for a, b in zip(straight, run.metrics):
        assert a["train_loss"] == b["train_loss"] and a.get("batch_loss") == b.get("batch_loss")


def _cli(*args):
    return [sys.executable, "-m", "genlab.cli", "train", *args]


SMALL_FLAGS = ["--dataset", "mnist1d", "--n-train", "400", "--model", "mlp", "--width", "32", "--dropout", "0.1",
               "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--batch-size", "16", "--seed", "3",
               "--steps", "4000", "--checkpoint-every", "25", "--eval-every", "500", "--quiet"]


def _wait_for_checkpoint(path: Path, min_step: int, proc, timeout=120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be interrupted: {proc.stderr.read()}")
        try:
            if read_checkpoint_metadata(path)["step"] >= min_step:
                return
        except Exception:
            pass
        time.sleep(0.05)
    pytest.fail("no checkpoint appeared")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killed_process_resumes_to_same_parameters(tmp_path, sig):
    """A real process killed (SIGKILL), Ctrl-C'd (SIGINT) or pre-empted (SIGTERM), rerun with the same command."""
    straight = subprocess.run(_cli(*SMALL_FLAGS, "--out", str(tmp_path / "straight")), capture_output=True,
                              text=True)
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*SMALL_FLAGS, "--out", str(out)), stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(out / "checkpoint.safetensors", 100, proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    if sig != signal.SIGKILL:  # stopped cleanly at a step boundary, checkpoint written there
        assert proc.returncode == 130
        assert "rerun the same command to resume" in proc.stderr.read()
        assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    stopped_at = read_checkpoint_metadata(out / "checkpoint.safetensors")["step"]
    assert 100 <= stopped_at < 4000
    resumed = subprocess.run(_cli(*SMALL_FLAGS, "--out", str(out)), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_params(tmp_path / "straight", out)
    steps = [r["step"] for r in load_run(out).metrics]
    assert steps == sorted(set(steps))


def test_divergence_stops_with_step_and_keeps_checkpoint(tmp_path):
    cfg = TrainConfig(dataset="mnist1d", n_train=200, model="mlp", optimizer="gd", loss="mse", lr=1e4, steps=50,
                      checkpoint_every=1, seed=0)
    with pytest.raises(DivergenceError, match=r"non-finite loss .* at step \d+") as err:
        train(cfg, tmp_path / "d", quiet=True)
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["status"] == "diverged" and str(err.value.step) in summary["message"]
    meta = read_checkpoint_metadata(tmp_path / "d" / "checkpoint.safetensors")
    assert meta["step"] == err.value.step - 1
    tensors = load_file(str(tmp_path / "d" / "checkpoint.safetensors"))
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))
    run = load_run(tmp_path / "d")  # a diverged run still loads: its last good checkpoint
    assert run.status == "diverged" and all(torch.isfinite(p).all() for p in run.model.parameters())


class Poison(Callback):
    """Makes the parameters non-finite after step `at` (as an overflowing update would)."""

    def __init__(self, at):
        self.at = at

    def on_step_end(self, state):
        if state.step == self.at - 1:
            state.optimizer.param_groups[0]["lr"] = float("inf")


def test_non_finite_parameters_never_reach_a_checkpoint(tmp_path):
    cfg = TrainConfig(**SMALL, steps=20, checkpoint_every=1)
    with pytest.raises(DivergenceError, match="non-finite parameters after step 8") as err:
        train(cfg, tmp_path / "p", callbacks=[Poison(at=8)], quiet=True)
    assert err.value.step == 8
    assert read_checkpoint_metadata(tmp_path / "p" / "checkpoint.safetensors")["step"] == 7
    tensors = load_file(str(tmp_path / "p" / "checkpoint.safetensors"))
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["status"] == "diverged"


def test_other_settings_refuse_to_resume(tmp_path):
    cfg = TrainConfig(**SMALL, steps=3)
    train(cfg, tmp_path / "r", quiet=True)
    with pytest.raises(CheckpointError, match="lr: 0.05 there, 0.1 now"):
        train(cfg.with_changes(lr=0.1), tmp_path / "r", quiet=True)
    train(cfg.with_changes(lr=0.1), tmp_path / "r", quiet=True, overwrite=True)
    assert load_run(tmp_path / "r").config.optimizer.lr == 0.1


def test_complete_run_is_not_retrained_and_can_be_extended(tmp_path):
    cfg = TrainConfig(**SMALL, epochs=1)
    train(cfg, tmp_path / "r", quiet=True)
    mtime = (tmp_path / "r" / "model.safetensors").stat().st_mtime_ns
    train(cfg, tmp_path / "r", quiet=True)
    assert (tmp_path / "r" / "model.safetensors").stat().st_mtime_ns == mtime
    train(cfg.with_changes(epochs=3), tmp_path / "r", quiet=True)
    train(cfg.with_changes(epochs=3), tmp_path / "straight", quiet=True)
    assert_same_params(tmp_path / "r", tmp_path / "straight")
    assert load_run(tmp_path / "r").config.run.epochs == 3  # config.json holds the settings now in force


def test_resume_refuses_changed_data(tmp_path):
    """Resuming with --data-dir pointing at other files (same format, other labels) is refused."""
    import gzip
    import struct

    from test_data import write_idx

    write_idx(tmp_path / "a" / "mnist", n=40)
    write_idx(tmp_path / "b" / "mnist", n=40)
    labels = struct.pack(">II", 2049, 40) + bytes((i * 3) % 10 for i in range(40))
    (tmp_path / "b" / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    cfg = TrainConfig(dataset="mnist", model="mlp", width=8, steps=6, batch_size=10, checkpoint_every=2,
                      data_dir=str(tmp_path / "a"))
    with pytest.raises(Crash.Boom):
        train(cfg, tmp_path / "r", callbacks=[Crash(at=3)], quiet=True)
    with pytest.raises(CheckpointError, match="differs from the data it was trained on"):
        train(cfg.with_changes(data_dir=str(tmp_path / "b")), tmp_path / "r", quiet=True)
    assert train(cfg, tmp_path / "r", quiet=True).summary["status"] == "complete"


def test_gd_step_is_full_batch_gradient_step(tmp_path):
    cfg = TrainConfig(dataset="mnist1d", n_train=300, model="mlp", width=16, optimizer="gd", lr=0.3, steps=1,
                      eval_batch_size=64, seed=1)
    assert batch_indices(cfg, 300, 0) is None
    run0 = train(cfg.with_changes(steps=1), tmp_path / "one", quiet=True)
    # rebuild the initial parameters and take the step by hand
    from genlab.train.run import load_data, make_model, make_objectives

    data = load_data(cfg)
    model = make_model(cfg, data, torch.device("cpu"))
    obj, _ = make_objectives(cfg, data, model)
    g = obj.grad()
    for k, p in run0.model.named_parameters():
        torch.testing.assert_close(p.detach().cpu(), dict(model.named_parameters())[k].detach() - 0.3 * g[k],
                                   atol=1e-6, rtol=0)


def test_sgd_batches_cover_each_epoch_once():
    cfg = TrainConfig(**{**SMALL, "batch_size": 64}, epochs=2)
    for epoch in range(2):
        idx = torch.cat([batch_indices(cfg, 400, epoch * 7 + s) for s in range(7)])
        assert sorted(idx.tolist()) == list(range(400))
    assert not torch.equal(batch_indices(cfg, 400, 0), batch_indices(cfg, 400, 7))


def test_corrupt_checkpoint_is_one_clear_error(tmp_path):
    cfg = TrainConfig(**SMALL, steps=20, checkpoint_every=5)
    with pytest.raises(Crash.Boom):
        train(cfg, tmp_path / "r", callbacks=[Crash(at=12)], quiet=True)
    (tmp_path / "r" / "checkpoint.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        train(cfg, tmp_path / "r", quiet=True)


def test_public_api_names():
    assert genlab.load_run is load_run and genlab.TrainConfig is TrainConfig


def test_cosine_schedule_resumes_exactly_and_refuses_lengthening(tmp_path):
    from genlab.train.loop import scheduled_lr

    cfg = TrainConfig(**{**SMALL, "lr_schedule": "cosine"}, steps=30, checkpoint_every=10, eval_every=5)
    assert scheduled_lr(cfg, 0, 30) == cfg.optimizer.lr
    assert scheduled_lr(cfg, 15, 30) == pytest.approx(cfg.optimizer.lr / 2)
    assert scheduled_lr(cfg, 29, 30) < 0.01 * cfg.optimizer.lr
    train(cfg, tmp_path / "straight", quiet=True)
    with pytest.raises(Crash.Boom):
        train(cfg, tmp_path / "crashed", callbacks=[Crash(at=25)], quiet=True)
    train(cfg, tmp_path / "crashed", quiet=True)
    assert_same_params(tmp_path / "straight", tmp_path / "crashed")
    train(TrainConfig(**SMALL, steps=30), tmp_path / "constant", quiet=True)
    cosine, constant = final_params(tmp_path / "straight"), final_params(tmp_path / "constant")
    assert any(not torch.equal(cosine[k], constant[k]) for k in cosine)   # the schedule is applied
    with pytest.raises(CheckpointError, match="steps"):
        train(cfg.with_changes(steps=40), tmp_path / "straight", quiet=True)


def test_a_run_refuses_to_be_reused_after_the_weights_it_started_from_changed(tmp_path):
    from genlab.errors import CheckpointError

    base = dict(dataset="digits", n_train=200, model="mlp", width=16, optimizer="sgd", lr=0.05, batch_size=50,
                steps=4)
    train(TrainConfig(**base), tmp_path / "a", quiet=True)
    follow = TrainConfig(**{**base, "init_from": str(tmp_path / "a")})
    first = train(follow, tmp_path / "b", quiet=True)
    assert train(follow, tmp_path / "b", quiet=True).summary == first.summary        # reused as it is
    # the run it started from is replaced under the same path: reusing b would mix two networks
    train(TrainConfig(**{**base, "lr": 0.2}), tmp_path / "a", overwrite=True, quiet=True)
    with pytest.raises(CheckpointError, match="init_from names changed since it started"):
        train(follow, tmp_path / "b", quiet=True)
