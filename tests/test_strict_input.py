"""Strict settings: finite numbers only, no bool/str coercion, sizes checked against memory before anything is
allocated, tolerances in a sensible range -- each bad value one line and exit 2, nothing written."""

from __future__ import annotations

import json

import pytest

from genlab.cli import main


def _one_error(capsys, args) -> str:
    code = main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("genlab: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("text, needle", [
    ("steps = true", "steps: Input should be a valid integer (got True)"),
    ('batch_size = "64"', "batch_size: Input should be a valid integer (got '64')"),
    ("seed = true", "seed: Input should be a valid integer (got True)"),
    ("lr = inf", "lr: Input should be a finite number"),
    ("lr = nan", "lr: Input should be a finite number"),
    ("n_train = 200.0", "n_train: Input should be a valid integer"),
    ("seed = 99999999999999999999", "seed: Input should be less than 9223372036854775808"),
    ("width = 1000000000", "width: Input should be less than or equal to 1048576"),
    ('tensorboard = "yes"', "tensorboard: Input should be a valid boolean"),
])
def test_config_file_values_are_taken_as_written(capsys, tmp_path, text, needle):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text + "\n")
    line = _one_error(capsys, ["train", "--out", str(tmp_path / "r"), "--config", str(cfg)])
    assert needle in line and not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--lr", "inf"], "lr: Input should be a finite number"),
    (["--optimizer", "sgld", "--noise-trace", "nan"], "noise_trace: Input should be a finite number"),
    (["--weight-decay", "-inf"], "weight_decay"),
])
def test_flag_values_must_be_finite(capsys, tmp_path, flags, needle):
    assert needle in _one_error(capsys, ["train", "--out", str(tmp_path / "r"), *flags])


def test_a_model_too_large_for_memory_is_refused_before_it_is_built(capsys, tmp_path):
    line = _one_error(capsys, ["train", "--out", str(tmp_path / "r"), "--dataset", "digits", "--width", "1048576",
                               "--depth", "8", "--steps", "1"])
    assert "parameters need about" in line and "GiB" in line and "smaller --width" in line
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("strict") / "r"
    assert main(["train", "--out", str(out), "--dataset", "digits", "--n-train", "100", "--width", "8",
                 "--steps", "2", "--quiet"]) == 0
    return out


@pytest.mark.parametrize("flags, needle", [
    (["--tol", "inf"], "--tol: the relative residual tolerance must lie in [1e-14, 1)"),
    (["--tol", "nan"], "--tol"),
    (["--tol", "0"], "--tol"),
    (["--tol", "-1"], "--tol"),
    (["--trace", "--trace-matvecs", "2"], "--trace-matvecs: must lie in [3, 100000]"),
    (["--top-k", "0"], "--top-k: must be >= 1"),
])
def test_curvature_tolerances_in_range(capsys, tiny_run, flags, needle):
    assert needle in _one_error(capsys, ["curvature", str(tiny_run), *flags])
    assert not (tiny_run / "curvature.json").exists()


def test_a_json_config_with_infinity_is_refused(capsys, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"lr": float("inf")}))  # Python writes Infinity, which JSON readers accept
    assert "lr: Input should be a finite number" in _one_error(capsys, ["train", "--out", str(tmp_path / "r"),
                                                                        "--config", str(cfg)])


@pytest.mark.parametrize("command", [["train"], ["bound"], ["reproduce", "sharpening", "--quick"],
                                     ["report", "."], ["sweep", "missing.toml"]])
def test_an_empty_out_is_refused_not_taken_as_the_working_directory(capsys, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    assert "--out is empty" in _one_error(capsys, [*command, "--out", ""])
    assert list(tmp_path.iterdir()) == []
