"""Certify a network after the fact (--from-model): a compressed predictor fitted to the network's probabilities,
its agreement with the network recorded and recomputed by verify; the distillation plugin's gradient checked by
hand; bad input one line."""

import copy
import json
import shutil

import pytest
import torch
from torch import nn

from genlab.bounds.compression import BoundConfig, VerificationError, compression_bound, verify
from genlab.cli import main as cli_main
from genlab.config import TrainConfig
from genlab.errors import ConfigError
from genlab.losses import as_loss
from genlab.objective import Objective
from genlab.train import train
from genlab.train.callbacks import TrainState
from genlab.train.distill import Distillation

BOUND = dict(dataset="digits", model="mlp", width=32, intrinsic_dim=250, epochs=6, quant_levels=5, qat_epochs=2,
             lr=0.05, batch_size=64)


def test_distillation_gradient_is_cross_entropy_against_the_soft_targets():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    soft = torch.softmax(torch.randn(10, 3), dim=1)
    objective = Objective(model, "ce", (x, y), batch_size=3)            # 3 chunks: the rows follow them in order
    plugin = Distillation(None, 1.0, targets=soft)
    indices = torch.tensor([7, 2, 9, 0, 4])
    state = TrainState(model=model, optimizer=None, objective=objective, indices=indices)
    compute = plugin.wrap_gradient(state, lambda target_transform=None: objective.accumulate_grad(
        indices, target_transform=target_transform))
    model.zero_grad()
    loss = compute()
    got = model.weight.grad.clone()
    model.zero_grad()
    expected = -(soft[indices] * torch.log_softmax(model(x[indices]), dim=1)).sum(1).mean()
    expected.backward()
    assert loss == pytest.approx(float(expected.detach()), rel=1e-6)
    assert torch.allclose(got, model.weight.grad, atol=1e-6)
    assert as_loss("ce").batch_sum(model(x[:2]), soft[:2]).shape == ()


@pytest.fixture(scope="module")
def original_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("after") / "plain"
    run = train(TrainConfig(dataset="digits", model="mlp", width=32, epochs=15, optimizer="adam", lr=0.01), out,
                quiet=True)
    return out, run


@pytest.fixture(scope="module")
def after_the_fact(original_run, tmp_path_factory):
    src, _ = original_run
    out = tmp_path_factory.mktemp("after") / "cert"
    return out, compression_bound(BoundConfig(**BOUND, from_model=str(src)), out, quiet=True)


def test_certificate_reports_agreement_with_the_original(original_run, after_the_fact):
    (src, run), (out, cert) = original_run, after_the_fact
    o = cert["original"]
    assert o["source"] == str(src) and (out / "original.safetensors").is_file()
    predictor_vs_labels = 1 - cert["test_error"]
    original_vs_labels = run.summary["test_accuracy"]
    assert o["test_error"] == pytest.approx(1 - original_vs_labels, abs=1e-9)
    # two predictors that are each right on a and b of the points agree on at least a + b - 1 of them
    assert o["test_agreement"] >= predictor_vs_labels + original_vs_labels - 1 - 1e-9
    assert 0.6 < o["test_agreement"] <= 1 and 0.6 < o["train_agreement"] <= 1
    assert cert["train_error"] <= cert["bound"] < cert["constant_predictor_error"]   # non-vacuous on digits
    assert json.loads((out / "subspace" / "config.json").read_text())["plugins"]["distill"]["distill_from"] == \
        str(out / "original.safetensors")
    figures = verify(out)
    assert figures["bound"] == cert["bound"] and "original.source" in figures["recorded_only"]


def test_verify_cli_says_what_was_certified(after_the_fact, capsys):
    out, cert = after_the_fact
    assert cli_main(["verify", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "verified" in lines[0] and "the bound is for the compressed predictor" in lines[1]
    assert f"{100 * cert['original']['test_agreement']:.2f}%" in lines[1]


def test_forged_agreement_or_swapped_original_does_not_verify(after_the_fact, original_run, tmp_path):
    out, _ = after_the_fact
    copy = tmp_path / "forged"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("subspace", "quantized"))
    data = json.loads((copy / "certificate.json").read_text())
    data["original"]["test_agreement"] = 1.0
    (copy / "certificate.json").write_text(json.dumps(data))
    with pytest.raises(VerificationError, match="original.test_agreement"):
        verify(copy)
    copy = tmp_path / "swapped"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("subspace", "quantized"))
    (copy / "original.safetensors").write_bytes((original_run[0] / "checkpoint.safetensors").read_bytes()
                                               if (original_run[0] / "checkpoint.safetensors").is_file() else b"x")
    with pytest.raises(VerificationError, match="original"):
        verify(copy)


def test_an_nn_module_from_python(original_run, tmp_path):
    _, run = original_run
    cert = compression_bound(BoundConfig(**BOUND), tmp_path / "module", quiet=True, original=run.model)
    assert cert["original"]["source"] == "nn.Module MLP (Python)"
    assert verify(tmp_path / "module")["train_errors"] == cert["train_errors"]
    with pytest.raises(Exception, match="do not fit"):
        compression_bound(BoundConfig(**{**BOUND, "width": 16}), tmp_path / "other", quiet=True, original=run.model)
    # another network of the same architecture into the same --out: refused before anything there is replaced
    other = copy.deepcopy(run.model)
    with torch.no_grad():
        next(other.parameters()).mul_(0.5)
    before = (tmp_path / "module" / "original.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="fitted to another network"):
        compression_bound(BoundConfig(**BOUND), tmp_path / "module", quiet=True, original=other)
    assert (tmp_path / "module" / "original.safetensors").read_bytes() == before
    assert verify(tmp_path / "module")["train_errors"] == cert["train_errors"]          # still intact


@pytest.mark.parametrize("args, needle", [
    (["--from-model", "/nonexistent/weights.safetensors"], "no such file or run directory"),
    (["--model", "cnn"], "that run has model = 'mlp'"),
    (["--distill-from", "x"], "No such option: --distill-from"),
])
def test_bad_from_model_is_one_line(original_run, tmp_path, capsys, args, needle):
    src, _ = original_run
    base = ["bound", "--dataset", "digits", "--model", "mlp", "--width", "32", "--intrinsic-dim", "250",
            "--epochs", "1", "--qat-epochs", "1", "--out", str(tmp_path / "bad")]
    if "--from-model" not in args:
        base += ["--from-model", str(src)]
    code = cli_main([*base, *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
