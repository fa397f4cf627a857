"""The genlab command: one clear line and exit status 2 for every kind of bad input."""

import json
import os
import subprocess
import sys

import pytest

from genlab.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("genlab: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_version(capsys):
    from genlab import __version__

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"genlab {__version__}"


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "genlab.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("genlab ")


@pytest.mark.parametrize("args, needle", [
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'; allowed: mnist1d"),
    (["--model", "gpt"], "unknown model 'gpt'; allowed: mlp"),
    (["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'; allowed: gd, sgd, adam"),
    (["--lr", "-1"], "lr: Input should be greater than 0"),
    (["--lr", "abc"], "Invalid value for '--lr'"),
    (["--label-noise", "1.5"], "label_noise"),
    (["--epochs", "3", "--steps", "4"], "epochs or steps, not both"),
    (["--loss", "hinge"], "loss"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--frobnicate"], "frobnicate"),
    (["--dataset-option", "noequals"], "KEY=VALUE"),
    (["--dataset-option", "seed=abc"], "dataset options for mnist1d"),
    (["--dataset-option", "colour=3"], "allowed: seed, num_samples"),
    (["--dataset", "teacher-student", "--dataset-option", "noise=-1"], "option noise must be >= 0"),
    (["--model", "lenet5", "--dataset", "digits"], "lenet5 needs inputs of at least 12"),
    (["--model", "resnet", "--depth", "7"], "6n+2"),
    (["--model", "vit", "--model-option", "heads=3"], "not divisible by heads 3"),
])
def test_bad_flags(capsys, tmp_path, args, needle):
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), *args)
    assert code == 2
    assert needle in one_error_line(err)
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()


def test_out_is_a_file_or_unwritable(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "f"), "--steps", "1")
    assert code == 2 and "exists and is not a directory" in one_error_line(err)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file instead
            target = tmp_path / "f" / "run"
        else:
            target = locked / "run"
        code, _, err = run_cli(capsys, "train", "--out", str(target), "--steps", "1", "--n-train", "50")
        assert code in (1, 2) and str(tmp_path) in one_error_line(err)
    finally:
        locked.chmod(0o700)


def test_missing_out(capsys):
    code, _, err = run_cli(capsys, "train", "--dataset", "mnist1d")
    assert code == 2 and "--out" in one_error_line(err)


def test_bad_config_files(capsys, tmp_path):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("lr = = 3\n")
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), "--config", str(bad_toml))
    assert code == 2 and "is not valid TOML" in one_error_line(err)

    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"learning_rate": 0.1}))
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), "--config", str(unknown))
    line = one_error_line(err)
    assert code == 2 and "learning_rate: unknown setting" in line and "allowed settings:" in line

    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), "--config", str(tmp_path / "nope.toml"))
    assert code == 2 and "not found" in one_error_line(err)

    yaml = tmp_path / "c.yaml"
    yaml.write_text("lr: 0.1\n")
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), "--config", str(yaml))
    assert code == 2 and "allowed: .toml, .json" in one_error_line(err)


def test_config_file_and_flag_override(capsys, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('dataset = "mnist1d"\nn_train = 200\nmodel = "mlp"\nwidth = 16\nlr = 0.5\nepochs = 9\n'
                   'optimizer = "gd"\n[model_options]\n')
    code, out, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), "--config", str(cfg), "--lr", "0.1",
                             "--steps", "2", "--quiet")
    assert code == 0, err
    stored = json.loads((tmp_path / "r" / "config.json").read_text())  # stored in sections
    assert stored["optimizer"]["lr"] == 0.1 and stored["model"]["width"] == 16
    assert stored["run"]["steps"] == 2 and stored["run"]["epochs"] is None
    assert "complete after 2 steps" in out


def test_rerun_from_a_run_config_with_option_override(capsys, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('dataset = "teacher-student"\nsteps = 2\nlr = 0.01\n[dataset_options]\ninput_dim = 5\nnoise = 0.5\n')
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "a"), "--config", str(cfg), "--quiet",
                           "--dataset-option", "noise=0.0")
    assert code == 0, err
    stored = json.loads((tmp_path / "a" / "config.json").read_text())
    assert stored["data"]["dataset_options"] == {"input_dim": 5, "noise": 0.0}
    # a run's own config.json is a valid config file: the same run again, elsewhere
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "b"), "--config",
                           str(tmp_path / "a" / "config.json"), "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["train_loss"] == json.loads(
        (tmp_path / "a" / "summary.json").read_text())["train_loss"]


def test_config_file_in_sections(capsys, tmp_path):
    """A TOML file may give its settings by section; the optimizer table holds only that optimizer's settings,
    and a flag choosing another optimizer makes a leftover setting of the first one an error."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[data]\nname = "mnist1d"\nn_train = 200\n[model]\nwidth = 16\n[optimizer]\nname = "ivon"\n'
                   'lr = 0.05\ness = 1000.0\n[run]\nsteps = 2\n[plugins.tracking]\ntrack_sharpness = 1\n')
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), "--config", str(cfg), "--quiet")
    assert code == 0, err
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert stored["optimizer"] == {**stored["optimizer"], "name": "ivon", "lr": 0.05, "ess": 1000.0}
    assert "momentum" not in stored["optimizer"] and stored["plugins"]["tracking"]["track_sharpness"] == 1
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "s"), "--config", str(cfg), "--optimizer", "sgd")
    assert code == 2 and "ess: a setting of optimizer ivon, which this run does not use" in one_error_line(err)
    cfg.write_text('[optimizer]\nname = "sgd"\nbeta = 0.5\n')
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "t"), "--config", str(cfg))
    assert code == 2 and "beta: unknown setting" in one_error_line(err)


def test_missing_data_files_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), "--dataset", "fashion-mnist",
                           "--data-dir", str(tmp_path / "empty"))
    line = one_error_line(err)
    assert code == 2 and "train-images-idx3-ubyte.gz" in line and str(tmp_path / "empty") in line


def test_regression_run(capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), "--dataset", "sparse-regression",
                             "--optimizer", "gd", "--lr", "0.05", "--steps", "5", "--quiet")
    assert code == 0, err
    assert "acc n/a" in out


def test_divergence_exit_status(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), "--dataset", "mnist1d", "--n-train",
                           "100", "--optimizer", "gd", "--loss", "mse", "--lr", "1e4", "--steps", "60", "--quiet")
    assert code == 1 and "non-finite loss" in one_error_line(err)


def test_listing_commands(capsys):
    code, out, _ = run_cli(capsys, "datasets")
    assert code == 0
    for name in ("mnist1d", "digits", "mnist", "fashion-mnist", "cifar10", "teacher-student", "sparse-regression"):
        assert name in out
    code, out, _ = run_cli(capsys, "models", "--dataset", "mnist")
    assert code == 0
    for name in ("mlp", "lenet5", "cnn", "resnet", "vit"):
        assert name in out
    assert "61,706" in out  # LeNet-5 on 28x28 MNIST: the classic parameter count
    code, out, _ = run_cli(capsys, "models", "--dataset", "digits")
    assert code == 0 and "n/a" in out  # lenet5 cannot take 8x8 inputs, and says why


def test_progress_bar_on_a_terminal_and_quiet(tmp_path):
    """On a terminal `genlab train` draws a progress bar; with --quiet it prints only the result line."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    def run_on_pty(*extra):
        pid, fd = pty.fork()
        if pid == 0:  # child: the CLI, with the pty as its terminal
            os.execv(sys.executable, [sys.executable, "-m", "genlab.cli", "train", "--dataset", "mnist1d",
                                      "--n-train", "500", "--model", "mlp", "--epochs", "3",
                                      "--out", str(tmp_path / f"r{len(extra)}"), *extra])
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        chunks = []
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")

    code, text = run_on_pty()
    assert code == 0, text
    assert "step/s" in text and "24/24" in text  # tqdm's bar reached the last step
    code, text = run_on_pty("--quiet")
    assert code == 0 and "step/s" not in text and "complete after 24 steps" in text


@pytest.mark.parametrize("command", ["train", "bound"])
def test_a_model_option_that_is_a_setting_is_one_line(capsys, tmp_path, command):
    code, _, err = run_cli(capsys, command, "--dataset", "mnist1d", "--model", "resnet", "--model-option",
                           "batchnorm=true", "--out", str(tmp_path / "r"))
    line = one_error_line(err)
    assert code == 2 and "'batchnorm' is a setting of its own (--batchnorm / --no-batchnorm)" in line
