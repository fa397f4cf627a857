"""Damage is reported as damage: every tensor file carries a checksum of its contents, checked on every load;
a complete run whose files fail their check is not "nothing to do"; crafted checkpoint metadata is refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from genlab.cli import main
from genlab.errors import CheckpointError
from genlab.train.checkpoint import content_digest, load_state_dict, read_checkpoint_metadata, save_state_dict

TINY = ["--dataset", "digits", "--n-train", "200", "--width", "8", "--quiet"]


def _flip_tensor_byte(path, offset_from_end=3):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x40          # inside the last tensor's bytes, past the header
    path.write_bytes(bytes(data))


def test_checksum_recorded_and_checked(tmp_path):
    path = tmp_path / "t.safetensors"
    save_state_dict(path, {"a": torch.arange(6.0), "b": torch.tensor(True), "c": torch.zeros(0)}, {"k": "v"})
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["sha256"] == content_digest(load_file(str(path)), meta) and meta["k"] == "v"
    assert torch.equal(load_state_dict(path)["a"], torch.arange(6.0))
    _flip_tensor_byte(path, offset_from_end=12)
    with pytest.raises(CheckpointError, match="contents differ from the checksum"):
        load_state_dict(path)


def test_files_written_before_checksums_still_load(tmp_path):
    path = tmp_path / "old.safetensors"
    save_file({"a": torch.ones(3)}, str(path), metadata={"format": "genlab-model-1"})
    assert torch.equal(load_state_dict(path)["a"], torch.ones(3))


@pytest.fixture
def complete_run(tmp_path):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), *TINY, "--steps", "6", "--checkpoint-every", "3"]) == 0
    return out


def test_a_damaged_checkpoint_is_corruption_not_divergence(complete_run, capsys):
    out = complete_run
    (out / "model.safetensors").unlink()
    (out / "summary.json").unlink()
    _flip_tensor_byte(out / "checkpoint.safetensors")
    code = main(["train", "--out", str(out), *TINY, "--steps", "6", "--checkpoint-every", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "checkpoint.safetensors is corrupt" in err and "lr" not in err.split("corrupt", 1)[1]


def test_a_damaged_final_model_is_not_nothing_to_do(complete_run, capsys):
    out = complete_run
    _flip_tensor_byte(out / "model.safetensors")
    code = main(["train", "--out", str(out), *TINY, "--steps", "6", "--checkpoint-every", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "model.safetensors is corrupt" in err and "nothing to do" not in err
    code = main(["curvature", str(out), "--top-k", "1"])
    assert code == 2 and "model.safetensors is corrupt" in capsys.readouterr().err
    (out / "model.safetensors").unlink()      # as the message says: the rerun rebuilds it from the checkpoint
    assert main(["train", "--out", str(out), *TINY, "--steps", "6", "--checkpoint-every", "3"]) == 0
    assert load_state_dict(out / "model.safetensors")


def test_a_truncated_model_is_refused(complete_run, capsys):
    path = complete_run / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-20])
    assert main(["curvature", str(complete_run), "--top-k", "1"]) == 2
    assert "model.safetensors is corrupt" in capsys.readouterr().err


@pytest.mark.parametrize("step", ["abc", "-5", str(10 ** 15), ""])
def test_crafted_checkpoint_step_is_refused(tmp_path, step):
    path = tmp_path / "c.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "genlab-checkpoint-1", "step": step})
    with pytest.raises(CheckpointError, match="is not a step count"):
        read_checkpoint_metadata(path)


def test_a_sweep_does_not_skip_a_run_whose_model_is_damaged(tmp_path):
    from genlab.sweep import run_is_complete

    out = tmp_path / "r"
    settings = {"dataset": "digits", "n_train": 200, "width": 8, "steps": 4}
    assert main(["train", "--out", str(out), "--quiet", *[f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]]) == 0
    assert run_is_complete(out, settings)
    _flip_tensor_byte(out / "model.safetensors")
    assert not run_is_complete(out, settings)


def test_damaged_metrics_lines_are_kept_aside_not_deleted(tmp_path, capsys):
    from genlab.train.run_dir import RunDir

    out = tmp_path / "r"
    args = ["train", "--out", str(out), *TINY, "--checkpoint-every", "4", "--eval-every", "2"]
    assert main([*args, "--steps", "8"]) == 0
    lines = (out / "metrics.jsonl").read_bytes().split(b"\n")[:-1]
    assert [json.loads(x)["step"] for x in lines] == [0, 2, 4, 6, 8]
    damaged = [b"{not json", b"[1, 2]", b"\xff\xfe not utf-8"]
    (out / "metrics.jsonl").write_bytes(b"\n".join([lines[0], damaged[0], lines[1], damaged[1], lines[2],
                                                     damaged[2], *lines[3:]]) + b"\n")
    assert [r["step"] for r in RunDir(out).read_metrics()] == [0, 2, 4, 6, 8]   # every intact record read
    capsys.readouterr()
    # lengthened: resumes from the step-8 checkpoint, which rewrites metrics.jsonl up to step 8
    assert main([*args, "--steps", "12"]) == 0
    assert "3 damaged line(s) moved to" in capsys.readouterr().err
    assert [r["step"] for r in RunDir(out).read_metrics()] == [0, 2, 4, 6, 8, 10, 12]
    assert (out / "metrics.damaged.jsonl").read_bytes() == b"".join(d + b"\n" for d in damaged)


@pytest.mark.parametrize("name, content", [("env.json", b"{truncated"), ("env.json", b"[1, 2]"),
                                           ("config.json", b"\xff\xfe"), ("config.json", b"")])
def test_a_damaged_json_file_is_named_in_one_line(complete_run, capsys, name, content):
    (complete_run / name).write_bytes(content)
    code = main(["train", "--out", str(complete_run), *TINY, "--steps", "6", "--checkpoint-every", "3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"{name} is damaged" in err and "\n" not in err and "Traceback" not in err


def test_a_damaged_summary_is_rewritten_by_the_rerun(complete_run, capsys):
    before = json.loads((complete_run / "summary.json").read_text())
    (complete_run / "summary.json").write_text("{")
    assert main(["report", str(complete_run)]) == 2 and "summary.json is damaged" in capsys.readouterr().err
    assert main(["train", "--out", str(complete_run), *TINY, "--steps", "6", "--checkpoint-every", "3"]) == 0
    assert json.loads((complete_run / "summary.json").read_text())["train_loss"] == before["train_loss"]


def test_a_run_that_lost_its_config_is_not_overwritten_silently(complete_run, capsys):
    (complete_run / "config.json").unlink()
    weights = (complete_run / "model.safetensors").read_bytes()
    code = main(["train", "--out", str(complete_run), *TINY, "--steps", "6", "--lr", "0.5"])
    err = capsys.readouterr().err
    assert code == 2 and "but no config.json" in err and "--overwrite" in err
    assert (complete_run / "model.safetensors").read_bytes() == weights          # nothing touched
    assert main(["train", "--out", str(complete_run), *TINY, "--steps", "6", "--lr", "0.5", "--overwrite"]) == 0


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    import errno

    import genlab.train.checkpoint as ck

    path = tmp_path / "c.safetensors"
    save_state_dict(path, {"a": torch.ones(4)})

    def no_space(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", filename)

    monkeypatch.setattr(ck, "save_file", no_space)
    with pytest.raises(CheckpointError, match="cannot write .* No space left on device.*previous version"):
        save_state_dict(path, {"a": torch.zeros(4)})
    assert torch.equal(load_state_dict(path)["a"], torch.ones(4))
    assert not (tmp_path / "c.safetensors.tmp").exists()
