"""SGLD noise covariances against explicit d x d matrices, the closed form of Wang et al., and the optimizer."""

import json
import math

import pytest
import torch

from genlab.optim import SGLD, closed_form_kl_ratio, information_bound, noise_covariance
from genlab.optim.noise import SHAPES, expected_kl_term, gram_eigen, residual_share


def grads(B=6, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.1, 3.0, d, dtype=torch.float64)
    return torch.randn(B, d, generator=g, dtype=torch.float64) * scales + 0.5


def explicit_cov(G):
    Gc = G - G.mean(dim=0)
    return Gc.T @ Gc / G.shape[0]


def psd_sqrt(C):
    lam, U = torch.linalg.eigh(C)
    lam = torch.where(lam > 1e-12 * lam.max(), lam, torch.zeros_like(lam))  # roundoff zeros stay zero under sqrt
    return U @ torch.diag(lam.sqrt()) @ U.T


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_has_the_trace_budget_and_the_explicit_matrix(shape):
    G, tau, floor = grads(), 0.3, 0.01
    d = G.shape[1]
    cov = noise_covariance(shape, G, tau, floor, complete=False)
    dense = cov.dense(d)
    assert cov.trace(d) == pytest.approx(tau, rel=1e-10)
    assert float(torch.trace(dense)) == pytest.approx(tau, rel=1e-10)
    C = explicit_cov(G)
    S = {"isotropic": torch.eye(d, dtype=G.dtype), "diagonal": torch.diag(torch.diag(C)), "gradcov": C,
         "sqrt-gradcov": psd_sqrt(C)}[shape]
    expected = tau * S / torch.trace(S)
    if shape != "isotropic":
        expected = (1 - floor) * expected + floor * tau / d * torch.eye(d, dtype=G.dtype)
    torch.testing.assert_close(dense, expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("shape", ["gradcov", "sqrt-gradcov"])
def test_completed_shapes_are_the_completed_covariance_scaled_to_the_budget(shape):
    G, tau, floor = grads(B=8, d=20), 0.3, 0.01
    d = G.shape[1]
    rho = residual_share(G)
    assert 0 < rho < 1
    C = explicit_cov(G)
    lam, U = torch.linalg.eigh(C)
    keep = lam > 1e-10 * lam.max()
    V, lam = U[:, keep], lam[keep]
    rest = rho * float(lam.sum()) / (d - lam.numel())
    Ct = (1 - rho) * V @ torch.diag(lam) @ V.T + rest * torch.eye(d, dtype=G.dtype)
    S = Ct if shape == "gradcov" else psd_sqrt(Ct)
    expected = (1 - floor) * tau * S / torch.trace(S) + floor * tau / d * torch.eye(d, dtype=G.dtype)
    cov = noise_covariance(shape, G, tau, floor)
    assert cov.trace(d) == pytest.approx(tau, rel=1e-10)
    torch.testing.assert_close(cov.dense(d), expected, rtol=1e-8, atol=1e-10)


def test_residual_share_is_the_cross_fitted_share_outside_the_other_halfs_span():
    G = grads(B=10, d=30, seed=4)
    Gc = G - G.mean(dim=0)
    shares = []
    for a, b in ((Gc[0::2], Gc[1::2]), (Gc[1::2], Gc[0::2])):
        Q, _ = torch.linalg.qr(a.T)  # orthonormal basis of the span of a's rows
        outside = b.T - Q @ (Q.T @ b.T)
        shares.append(float(outside.pow(2).sum() / b.pow(2).sum()))
    assert residual_share(G) == pytest.approx(sum(shares) / 2, rel=1e-8)
    assert residual_share(torch.randn(40, 3, dtype=torch.float64)) == pytest.approx(0, abs=1e-10)  # B > d: spanned


def test_completion_keeps_the_sqrt_shape_below_isotropic_when_a_batch_sees_few_directions():
    # C with a decaying spectrum in d = 300; a batch of 32 sees 31 directions. Exact KL terms tr(Sigma^-1 C):
    # the completed C^1/2 stays below isotropic; the uncompleted one charges the unseen variance to the floor.
    d, B = 300, 32
    gen = torch.Generator().manual_seed(5)
    spectrum = 1.0 / torch.arange(1, d + 1, dtype=torch.float64) ** 1.5
    U, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    C = U @ torch.diag(spectrum) @ U.T
    G = torch.randn(B, d, generator=gen, dtype=torch.float64) * spectrum.sqrt() @ U.T
    iso = expected_kl_term(noise_covariance("isotropic", G, 1.0), C)
    completed = expected_kl_term(noise_covariance("sqrt-gradcov", G, 1.0, 1e-3), C)
    plain = expected_kl_term(noise_covariance("sqrt-gradcov", G, 1.0, 1e-3, complete=False), C)
    assert completed < 0.8 * iso
    assert plain > 10 * iso
    optimum = float(torch.linalg.eigvalsh(C).clamp_min(0).sqrt().sum() ** 2)  # (tr C^1/2)^2 / trace
    assert completed > optimum * (1 - 1e-9)


@pytest.mark.parametrize("shape", SHAPES)
def test_inverse_quadratic_form_matches_a_dense_solve(shape):
    G = grads()
    d = G.shape[1]
    cov = noise_covariance(shape, G, 0.3, 0.01)
    v = torch.randn(d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    exact = float(v @ torch.linalg.solve(cov.dense(d), v))
    assert cov.inv_quad(v) == pytest.approx(exact, rel=1e-8)


@pytest.mark.parametrize("shape", ["diagonal", "sqrt-gradcov"])
def test_samples_have_the_covariance(shape):
    G = grads()
    d = G.shape[1]
    cov = noise_covariance(shape, G, 1.0, 0.05)
    gen = torch.Generator().manual_seed(0)
    X = torch.stack([cov.sample(d, gen) for _ in range(20000)])
    emp = X.T @ X / X.shape[0]
    dense = cov.dense(d)
    assert float((emp - dense).norm() / dense.norm()) < 0.05


def test_gram_eigenpairs_are_those_of_the_covariance():
    G = grads(B=5, d=9)
    lam, V = gram_eigen(G)
    C = explicit_cov(G)
    assert lam.numel() == 4  # rank B - 1 after centring
    torch.testing.assert_close(C @ V, V * lam, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(V.T @ V, torch.eye(4, dtype=G.dtype), rtol=0, atol=1e-10)


def test_sqrt_gradcov_minimises_the_kl_term_at_equal_trace_and_matches_the_closed_form():
    # full-rank C (B > d), floor negligible: E[(g - mu)^T Sigma^-1 (g - mu)] = tr(Sigma^-1 C)
    G = grads(B=400, d=10, seed=1)
    C = explicit_cov(G)
    terms = {s: expected_kl_term(noise_covariance(s, G, 1.0, 1e-9), C) for s in SHAPES}
    assert terms["sqrt-gradcov"] <= min(terms.values()) * (1 + 1e-9)
    assert terms["sqrt-gradcov"] / terms["isotropic"] == pytest.approx(closed_form_kl_ratio(C), rel=1e-6)
    assert closed_form_kl_ratio(C) < 1  # Cauchy-Schwarz, strict for a non-scalar C


def test_sgld_step_is_gradient_step_plus_the_noise_and_accounts_the_kl_term():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    opt = SGLD([w], lr=0.1, noise="isotropic", noise_trace=0.5, seed=7)
    w0 = w.detach().clone()
    w.grad = torch.arange(5, dtype=torch.float64)
    mu = torch.ones(5, dtype=torch.float64)
    opt.step(prior_mean=mu)
    xi = noise_covariance("isotropic", w0.unsqueeze(0), 0.5).sample(5, torch.Generator().manual_seed(7))
    torch.testing.assert_close(w.detach(), w0 - 0.1 * w.grad + xi)
    diff = w.grad - mu
    assert opt.info == pytest.approx(0.5 * 0.01 * float(diff @ diff) * 5 / 0.5)


def test_sgld_needs_per_sample_grads_for_anisotropic_shapes_and_resumes_its_noise():
    w = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = SGLD([w], lr=0.1, noise="sqrt-gradcov", noise_trace=0.1)
    w.grad = torch.ones(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="per_sample_grads"):
        opt.step()
    G = grads(B=3, d=4)
    opt.step(per_sample_grads=G, prior_mean=torch.zeros(4, dtype=torch.float64))
    sd = opt.state_dict()
    a = w.detach().clone()
    opt.step(per_sample_grads=G)
    after_a = w.detach().clone()
    w.data.copy_(a)
    opt2 = SGLD([w], lr=0.1, noise="sqrt-gradcov", noise_trace=0.1, seed=99)
    opt2.load_state_dict(sd)
    opt2.step(per_sample_grads=G)
    torch.testing.assert_close(w.detach(), after_a)
    assert opt2.info == pytest.approx(opt.info) and opt2.info > 0


def test_information_bound_by_hand():
    assert information_bound(2.0, 100, 0.5) == pytest.approx(math.sqrt(2 * 0.25 * 2.0 / 100))
    with pytest.raises(ValueError):
        information_bound(-1.0, 10)


def test_sgld_training_runs_resumes_exactly_and_reports_the_bound(tmp_path):
    from test_train import Crash, assert_same_params

    from genlab.config import TrainConfig
    from genlab.train import train

    for optimizer in ("sgld", "gld"):
        cfg = TrainConfig(dataset="mnist1d", n_train=300, model="mlp", width=16, optimizer=optimizer, lr=0.05,
                          batch_size=32, seed=1, steps=12, checkpoint_every=4, eval_every=4,
                          sgld_noise="sqrt-gradcov", noise_trace=1e-2, noise_floor=0.1)
        straight = train(cfg, tmp_path / f"{optimizer}-straight", quiet=True)
        with pytest.raises(Crash.Boom):
            train(cfg, tmp_path / f"{optimizer}-crashed", callbacks=[Crash(at=10)], quiet=True)
        train(cfg, tmp_path / f"{optimizer}-crashed", quiet=True)
        assert_same_params(tmp_path / f"{optimizer}-straight", tmp_path / f"{optimizer}-crashed")
        s = straight.summary
        assert s["sgld_information"] > 0
        assert s["sgld_error_gap_bound"] == pytest.approx(information_bound(s["sgld_information"], 300, 0.5))
        assert s["sgld_heldout"].endswith("training-split points beyond n_train")
        resumed = json.loads((tmp_path / f"{optimizer}-crashed" / "summary.json").read_text())
        assert resumed["sgld_information"] == pytest.approx(s["sgld_information"], rel=1e-9)


def test_a_covariance_from_the_training_batch_reports_no_bound_and_the_pool_is_the_unused_points(tmp_path):
    from genlab.config import TrainConfig
    from genlab.data import load_dataset
    from genlab.train import train

    full, sub = load_dataset("mnist1d"), load_dataset("mnist1d", n_train=300)
    torch.testing.assert_close(sub.x_heldout, full.x_train[300:])
    assert load_dataset("mnist1d").x_heldout is None
    cfg = TrainConfig(dataset="mnist1d", n_train=300, model="mlp", width=16, optimizer="sgld", lr=0.05,
                      batch_size=32, steps=3, sgld_noise="gradcov", sgld_cov="batch")
    s = train(cfg, tmp_path / "batch", quiet=True).summary
    assert s["sgld_information"] > 0 and s["sgld_error_gap_bound"] is None and "no bound" in s["sgld_bound_note"]
    s = train(cfg.with_changes(**{"n_train": None, "steps": 2}), tmp_path / "all", quiet=True).summary
    assert s["sgld_heldout"].startswith("the test split")


def test_sgld_noise_moves_the_weights_by_the_trace_budget():
    # zero gradient: each step adds N(0, Sigma) with tr(Sigma) = noise_trace, so E||w_T - w_0||^2 = T * trace
    # (d = 2000: ||w||^2 / E is chi^2_d / d, relative spread sqrt(2 / d) = 3%)
    w = torch.nn.Parameter(torch.zeros(2000, dtype=torch.float64))
    opt = SGLD([w], lr=0.1, noise="isotropic", noise_trace=0.2, seed=0)
    for _ in range(100):
        w.grad = torch.zeros_like(w)
        opt.step()
    assert float(w.detach().pow(2).sum()) == pytest.approx(100 * 0.2, rel=0.12)


def test_heldout_covariance_comes_from_held_out_points_only():
    from genlab.curvature.gradcov import stacked_per_sample_grads
    from genlab.optim.sgld import _step_subset, step_inputs
    from test_noise_injection import regression_objective

    train_obj, test_obj = regression_objective(0), regression_objective(1)
    test_obj.model = train_obj.model  # same network, other data
    opt = SGLD(train_obj.model.parameters(), lr=0.1, noise="sqrt-gradcov")
    got = step_inputs(opt, train_obj, test_obj, torch.arange(8), batch_size=8, seed=0, step=3, bound=True,
                      cov="heldout", cov_size=10)
    expected = stacked_per_sample_grads(test_obj, _step_subset(0, 3, 3, test_obj.n, 10))
    torch.testing.assert_close(got["per_sample_grads"], expected)
    assert got["prior_mean"].shape == (expected.shape[1],)
    batch = step_inputs(opt, train_obj, test_obj, torch.arange(8), batch_size=8, seed=0, step=3, bound=False,
                        cov="batch")
    torch.testing.assert_close(batch["per_sample_grads"], stacked_per_sample_grads(train_obj, torch.arange(8)))
    assert "prior_mean" not in batch


def test_negrea_prior_drift_is_the_mean_gradient_of_the_batch_points_in_the_prior_subset():
    from genlab.objective import params_to_vector
    from genlab.optim.sgld import prior_subset_mask, step_inputs
    from test_noise_injection import regression_objective

    obj = regression_objective()
    n = obj.n
    mask = prior_subset_mask(n, n // 2, seed=3)
    assert int(mask.sum()) == n // 2
    assert torch.equal(mask, prior_subset_mask(n, n // 2, seed=3)) and not torch.equal(mask, prior_subset_mask(n, n // 2, 4))
    opt = SGLD(list(obj.params().values()), lr=0.1, noise="isotropic", noise_trace=1e-2)
    batch = torch.arange(0, n, 3)
    out = step_inputs(opt, obj, obj, batch, batch_size=len(batch), seed=0, step=1, bound=True, prior_points=mask)
    expected = params_to_vector(obj.grad(indices=batch[mask[batch]]))
    torch.testing.assert_close(out["prior_mean"], expected)
    # full batch: the drift is the mean gradient on all of S_J
    out = step_inputs(opt, obj, obj, None, batch_size=8, seed=0, step=1, bound=True, prior_points=mask)
    torch.testing.assert_close(out["prior_mean"], params_to_vector(obj.grad(indices=torch.nonzero(mask).flatten())))
    with pytest.raises(ValueError, match="sgld_prior_size"):
        prior_subset_mask(n, n, 0)


def test_negrea_bound_by_hand_on_a_full_batch_run(tmp_path):
    # gld, isotropic noise: each step adds (lr^2 d / (2 tr)) ||g - gbar_J||^2 with g the full-batch gradient;
    # the summary's bound is sqrt(2 (1/2)^2 I / (n - m)) plus the 0-1 error on the n - m points outside S_J
    from genlab.config import TrainConfig
    from genlab.objective import params_to_vector
    from genlab.optim.sgld import error_rate, prior_subset_mask
    from genlab.train import train

    cfg = TrainConfig(dataset="mnist1d", n_train=200, model="mlp", width=8, optimizer="gld", lr=0.05, steps=3,
                      sgld_noise="isotropic", noise_trace=1e-2, sgld_bound="negrea", sgld_prior_size=150,
                      dtype="float64", seed=2, checkpoint_every=1)
    run = train(cfg, tmp_path / "run", quiet=True)
    s = run.summary
    mask = prior_subset_mask(200, 150, 2)
    rest = torch.nonzero(~mask).flatten()
    assert s["sgld_bound"] == "negrea" and s["sgld_prior_size"] == 150 and s["sgld_bound_points"] == 50
    assert s["sgld_bound_train_error"] == pytest.approx(error_rate(run.objective, rest))
    assert s["sgld_error_gap_bound"] == pytest.approx(information_bound(s["sgld_information"], 50, 0.5))
    assert s["sgld_test_error_bound"] == pytest.approx(s["sgld_bound_train_error"] + s["sgld_error_gap_bound"])
    # the accounted information by hand, in a plain loop: isotropic Sigma = (tr / d) I, so each step adds
    # (lr^2 d / (2 tr)) ||g - gbar_J||^2
    obj = run.objective
    params = list(obj.params().values())
    opt = SGLD(params, lr=0.05, noise="isotropic", noise_trace=1e-2, seed=0)
    from genlab.optim.sgld import step_inputs
    by_hand, d, inside = 0.0, obj.num_params(), torch.nonzero(mask).flatten()
    for step in range(3):
        g = params_to_vector(obj.grad())
        mu = params_to_vector(obj.grad(indices=inside))
        by_hand += 0.05 ** 2 * d / (2 * 1e-2) * float((g - mu).pow(2).sum())
        for p, gp in zip(params, obj.grad().values()):
            p.grad = gp.clone()
        opt.step(**step_inputs(opt, obj, obj, None, batch_size=8, seed=2, step=step, bound=True, prior_points=mask))
    assert opt.info == pytest.approx(by_hand, rel=1e-9)


def test_old_run_configs_with_a_boolean_sgld_bound_still_load():
    from genlab.config import TrainConfig

    assert TrainConfig(optimizer="sgld", sgld_bound=True).optimizer.sgld_bound == "heldout"
    assert TrainConfig(optimizer="sgld", sgld_bound=False).optimizer.sgld_bound == "off"
    with pytest.raises(Exception, match="sgld_prior_size"):
        TrainConfig(optimizer="sgld", sgld_prior_size=10)
