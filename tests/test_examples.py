"""docs/examples run as written: the user's own model, loss and DataLoader through fit, a plain loop and a
Lightning Trainer, then the CLI (curvature, report, train) on user code through --import."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def run_example(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, script, *args], cwd=EXAMPLES, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def genlab(*args: str, cwd: Path = EXAMPLES) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genlab", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def floats(line: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", line.split(":", 1)[1])]


@pytest.mark.slow
def test_own_model_example_fit_then_curvature_and_report_from_the_cli(tmp_path):
    out = tmp_path / "own"
    stdout = run_example("own_model.py", str(out))
    python_top = floats(next(l for l in stdout.splitlines() if l.startswith("top-3")))
    result = json.loads((out / "curvature.json").read_text())
    # the CLI rebuilt the model and data from the factories the run recorded: same Hessian, same eigenvalues
    assert result["top_eigenvalues"][:3] == pytest.approx(python_top, rel=1e-4)
    assert result["trace"] is not None and "density" in result
    assert (out / "report.html").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["test_accuracy"] > 0.8
    config = json.loads((out / "config.json").read_text())
    assert config["factories"]["model"]["factory"] == "examples_module:make_model"
    assert set(config["plugins"]) == {"noise", "sharpness"}  # a fit() record: plugin settings by key
    # without the import the run cannot be rebuilt, and the error says which module is missing
    elsewhere = genlab("curvature", str(out), cwd=tmp_path)
    assert elsewhere.returncode == 2
    assert "examples_module" in elsewhere.stderr and len(elsewhere.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.slow
def test_certify_own_network_example_after_the_fact_and_verified_elsewhere(tmp_path):
    stdout = run_example("certify_own_network.py", str(tmp_path / "cert"))
    cert = json.loads((tmp_path / "cert" / "certificate.json").read_text())
    assert cert["buffers"]["names"][:2] == ["1.running_mean", "1.running_var"]     # BatchNorm coded
    assert cert["code"]["model_factory"] == "examples_module:bn_cnn"
    assert [m["module"] for m in cert["code"]["imports"]] == ["examples_module"]   # hashed, to pass to --import
    assert 0.5 < cert["original"]["test_agreement"] <= 1
    assert any(": verified -- " in line for line in stdout.splitlines()[-2:])
    assert "the bound is for the compressed predictor" in stdout.splitlines()[-1]


def test_own_loop_example():
    stdout = run_example("own_loop.py")
    assert "posterior-predictive test accuracy" in stdout
    accuracy = float(stdout.split("accuracy")[1].split()[0])
    assert accuracy > 0.8
    assert len(floats(next(l for l in stdout.splitlines() if l.startswith("sharpness")))) == 4


@pytest.mark.slow
def test_own_lightning_example():
    pytest.importorskip("pytorch_lightning")
    stdout = run_example("own_lightning.py")
    line = next(l for l in stdout.splitlines() if "sharpness every 20 steps" in l)
    assert line.startswith("80 steps") and len(floats(line)) == 4


@pytest.mark.slow
def test_train_and_curvature_on_a_registered_user_model_and_dataset(tmp_path):
    out = tmp_path / "w"
    trained = genlab("train", "--import", "examples_module", "--dataset", "wine", "--model", "resmlp-ln",
                     "--width", "16", "--optimizer", "gd", "--lr", "0.1", "--steps", "30",
                     "--out", str(out), "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert json.loads((out / "env.json").read_text())["imports"] == ["examples_module"]
    # the run recorded its import: curvature re-imports it (from where it can be imported)
    curv = genlab("curvature", str(out), "--top-k", "2")
    assert curv.returncode == 0, curv.stderr
    one = json.loads((out / "curvature.json").read_text())
    # and so do the ranks of --nproc (spawned processes: each loads the run, re-importing the user's module)
    curv = genlab("curvature", str(out), "--top-k", "2", "--nproc", "2")
    assert curv.returncode == 0, curv.stderr
    two = json.loads((out / "curvature.json").read_text())
    assert two["processes"] == 2
    assert two["top_eigenvalues"] == pytest.approx(one["top_eigenvalues"], rel=1e-6)
    unknown = genlab("train", "--dataset", "wine", "--out", str(tmp_path / "x"))
    assert unknown.returncode == 2 and "unknown dataset 'wine'" in unknown.stderr


def test_data_dependent_bound_example_charges_nothing_for_its_prior_and_verifies(tmp_path):
    stdout = run_example("data_dependent_bound.py", str(tmp_path / "dd"))
    cert = json.loads((tmp_path / "dd" / "certificate.json").read_text())
    assert cert["prior"]["kind"] == "trained" and cert["preprocessing"]["bits"] == 0
    assert cert["settings"]["train"]["plugins"]["augment"]["augment_shift"] == 1
    assert cert["choices"]["augment_shift"] == 1 and cert["bound"] < cert["constant_predictor_error"]
    assert ": verified -- " in stdout.splitlines()[-1]
