"""--tensorboard: event files with the same numbers as metrics.jsonl, and no step logged twice after a resume."""

import json

import pytest

from genlab.config import TrainConfig
from genlab.train import train
from genlab.train.tensorboard import tensorboard_scalars

pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install 'genlab[tensorboard]')")


def read_events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_scalars_flatten_lists_and_drop_non_numbers():
    assert tensorboard_scalars({"step": 3, "a": 1.5, "eigenvalues": [2.0, 1.0], "ok": True, "s": "x",
                                "nan": float("nan")}) == {"a": 1.5, "eigenvalues/0": 2.0, "eigenvalues/1": 1.0}


def test_event_files_match_metrics(tmp_path):
    cfg = TrainConfig(dataset="mnist1d", model="mlp", width=16, n_train=200, optimizer="gd", lr=0.1, steps=12,
                      eval_every=3, track_sharpness=6, track_top_k=2, tensorboard=True)
    train(cfg, tmp_path, quiet=True)
    events = read_events(tmp_path / "tensorboard")
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    assert [s for s, _ in events["train_loss"]] == [s for s, _ in losses] == [0, 3, 6, 9, 12]
    assert [v for _, v in events["train_loss"]] == pytest.approx([v for _, v in losses], rel=1e-6)
    sharp = [(r["step"], r["sharpness"]) for r in records if "sharpness" in r]
    assert [s for s, _ in events["sharpness"]] == [s for s, _ in sharp]
    assert "eigenvalues/1" in events and "stability_threshold" in events


def test_resumed_run_logs_no_step_twice(tmp_path):
    base = dict(dataset="mnist1d", model="mlp", width=16, n_train=200, optimizer="gd", lr=0.1, eval_every=2,
                tensorboard=True)
    train(TrainConfig(**base, steps=6), tmp_path, quiet=True)
    train(TrainConfig(**base, steps=10), tmp_path, quiet=True)  # lengthened: resumes at step 6
    steps = [s for s, _ in read_events(tmp_path / "tensorboard")["train_loss"]]
    assert steps == [0, 2, 4, 6, 8, 10]
