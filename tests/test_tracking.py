"""Sharpness tracking during training and the `genlab curvature` command."""

import json
import math

import numpy as np
import pytest
import torch

from genlab.cli import main
from genlab.config import TrainConfig
from genlab.curvature import HessianOperator, lanczos
from genlab.curvature.tracking import adaptive_preconditioner, preconditioned_threshold, stability_threshold
from genlab.train import load_run, train


def gd_config(**kw):
    base = dict(dataset="mnist1d", n_train=300, model="mlp", width=32, activation="tanh", optimizer="gd", lr=0.5,
                loss="mse", steps=40, eval_every=20, track_sharpness=10, dtype="float64")
    return TrainConfig(**{**base, **kw})


def test_tracker_records_sharpness_against_the_final_hessian(tmp_path):
    run = train(gd_config(), tmp_path / "r", quiet=True)
    recs = [r for r in run.metrics if "sharpness" in r]
    assert [r["step"] for r in recs] == [0, 10, 20, 30, 40]
    assert all(r["stability_threshold"] == pytest.approx(2 / 0.5) for r in recs)
    # the last measurement is the top eigenvalue of the final model's Hessian
    H = HessianOperator(run.objective)
    ref = lanczos(H, tol=1e-10, generator=torch.Generator().manual_seed(5))
    assert recs[-1]["sharpness"] == pytest.approx(float(ref.eigenvalues[0]), rel=1e-4)
    assert run.summary["sharpness"] == recs[-1]["sharpness"]
    # warm starts cost fewer products than the cold first measurement
    assert np.mean([r["sharpness_hvps"] for r in recs[1:]]) < recs[0]["sharpness_hvps"]
    # gradient projections on the top eigenvector are (g . u)^2 <= ||g||^2
    assert all(0 <= r["grad_projections"][0] <= r["grad_norm"] ** 2 + 1e-12 for r in recs)


def test_tracking_does_not_change_the_trajectory_and_resumes(tmp_path):
    plain = train(gd_config(track_sharpness=None), tmp_path / "plain", quiet=True)
    tracked = train(gd_config(steps=20), tmp_path / "tracked", quiet=True)
    tracked = train(gd_config(steps=40), tmp_path / "tracked", quiet=True)  # lengthened: resumes at 20
    for a, b in zip(plain.model.parameters(), tracked.model.parameters()):
        assert torch.equal(a, b)
    steps = [r["step"] for r in tracked.metrics if "sharpness" in r]
    assert steps == [0, 10, 20, 30, 40]


def test_optional_tracked_quantities(tmp_path):
    run = train(gd_config(steps=10, track_top_k=3, track_trace=30, track_jacobian=True), tmp_path / "r", quiet=True)
    last = run.metrics[-1]
    assert len(last["eigenvalues"]) == 3 and last["eigenvalues"] == sorted(last["eigenvalues"], reverse=True)
    assert last["hessian_trace"] > 0
    assert 0 < last["jacobian_spec_max"] <= last["jacobian_fro_max"]


def test_adam_preconditioner_reproduces_adams_step_and_is_tracked(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    assert adaptive_preconditioner(opt) is None  # no state before the first step
    for _ in range(3):
        before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
        after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        m = torch.cat([opt.state[p]["exp_avg"].reshape(-1) for p in model.parameters()])
        # Adam's step is -lr P^-1 m with the P the tracker uses
        assert torch.allclose(after - before, -0.01 * m / adaptive_preconditioner(opt), atol=1e-7)
    cfg = gd_config(optimizer="adam", lr=0.01, batch_size=300, steps=5, track_sharpness=5, momentum=0.9)
    run = train(cfg, tmp_path / "r", quiet=True)
    rec = run.metrics[-1]
    # Adam's threshold is on the preconditioned sharpness; the raw sharpness has none
    assert rec["stability_threshold"] is None
    assert rec["preconditioned_threshold"] == pytest.approx((2 + 2 * 0.9) / ((1 - 0.9) * 0.01))
    assert rec["preconditioned_sharpness"] > rec["sharpness"]  # P < 1 entrywise early in training
    assert "preconditioned_sharpness" not in run.metrics[0]  # no P at step 0


def test_stability_thresholds():
    w = [torch.nn.Parameter(torch.zeros(2))]
    assert stability_threshold(torch.optim.SGD(w, lr=0.1)) == pytest.approx(20.0)
    assert stability_threshold(torch.optim.SGD(w, lr=0.1, momentum=0.9)) == pytest.approx(38.0)
    adam = torch.optim.Adam(w, lr=0.1, betas=(0.9, 0.999))
    assert math.isnan(stability_threshold(adam)) and preconditioned_threshold(adam) == pytest.approx(380.0)
    assert math.isnan(preconditioned_threshold(torch.optim.SGD(w, lr=0.1)))
    from genlab.optim import IVON, VariationalGD

    ivon = IVON(w, lr=0.1, ess=100.0, beta1=0.9)
    assert math.isnan(stability_threshold(ivon)) and preconditioned_threshold(ivon) == pytest.approx(380.0)
    vgd = VariationalGD(w, lr=0.1, sigma=0.01)
    assert stability_threshold(vgd) == pytest.approx(20.0) and math.isnan(preconditioned_threshold(vgd))


def test_curvature_command_writes_the_promised_keys(tmp_path, capsys):
    train(gd_config(steps=10, track_sharpness=None), tmp_path / "r", quiet=True)
    code = main(["curvature", str(tmp_path / "r"), "--top-k", "3", "--trace", "--density", "--jacobian",
                 "--gauss-newton", "--trace-matvecs", "60"])
    assert code == 0
    out = json.loads((tmp_path / "r" / "curvature.json").read_text())
    run = load_run(tmp_path / "r")
    assert out["loss"] == pytest.approx(run.objective.evaluate()["loss"], rel=1e-9)
    assert out["top_eigenvalues"] == sorted(out["top_eigenvalues"], reverse=True)
    dense = HessianOperator(run.objective).dense()
    exact = np.linalg.eigvalsh(dense.numpy())[::-1]
    np.testing.assert_allclose(out["top_eigenvalues"], exact[:3], rtol=1e-6)
    assert abs(out["trace"] - float(np.trace(dense.numpy()))) < 5 * out["trace_std_error"] + 1e-6
    assert out["hvp_count"] >= 60 + len(out["top_eigenvalues"])
    assert 0 < out["gauss_newton"]["top_ratio"] <= 1.5
    for fig in out["figures"]:
        assert (tmp_path / "r" / fig).stat().st_size > 1000
    assert "figures/spectral_density.png" in out["figures"]


def test_curvature_command_errors(tmp_path, capsys):
    assert main(["curvature", str(tmp_path / "missing")]) == 2
    assert "not a genlab run directory" in capsys.readouterr().err
    train(gd_config(steps=2, track_sharpness=None), tmp_path / "r", quiet=True)
    assert main(["curvature", str(tmp_path / "r"), "--dtype", "half"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "allowed: float32, float64" in err
    assert main(["train", "--out", str(tmp_path / "x"), "--track-sharpness", "0"]) == 2
    assert "track_sharpness" in capsys.readouterr().err
