"""The CMI bound of Haghifam et al. (2020) for Langevin dynamics: the super-sample, the per-step term by hand,
the expected KL sum and the exact conditional mutual information of a linear-Gaussian chain in closed form, and
a Monte Carlo check that the bound sits above the measured gap."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from genlab.data import load_dataset
from genlab.data.supersample import bound_pairs, draw_supersample, ghost_rows, selector
from genlab.errors import ConfigError
from genlab.objective import Objective, params_to_vector
from genlab.optim import SGLD, information_bound
from genlab.optim.sgld import BoundPairs, step_inputs


def test_supersample_pairs_each_training_position_with_a_point_beyond_n_train():
    data = load_dataset("mnist1d", n_train=100)
    k = 7
    ss = draw_supersample(data, k, supersample_seed=3, selector_seed=5)
    pos, u, rows = bound_pairs(100, k, 3), selector(k, 5), ghost_rows(len(data.x_heldout), k, 3)
    assert torch.equal(ss.ghost_of, pos) and 0 < int(u.sum()) < k  # both coin outcomes occur for this seed
    for j in range(k):
        members = {tuple(data.x_train[pos[j]].tolist()), tuple(data.x_heldout[rows[j]].tolist())}
        assert {tuple(ss.x_train[pos[j]].tolist()), tuple(ss.x_ghost[j].tolist())} == members
        trained_second = torch.equal(ss.x_train[pos[j]], data.x_heldout[rows[j]])
        assert trained_second == bool(u[j])
        assert int(ss.labels_train[pos[j]]) == int(ss.y_train[pos[j]])
    unpaired = torch.ones(100, dtype=torch.bool)
    unpaired[pos] = False
    assert torch.equal(ss.x_train[unpaired], data.x_train[unpaired])
    # the held-out points beyond the ghosts are what the noise covariance may use: independent of U
    rest = torch.ones(len(data.x_heldout), dtype=torch.bool)
    rest[rows] = False
    assert torch.equal(ss.x_heldout, data.x_heldout[rest]) and len(ss.x_heldout) == len(data.x_heldout) - k
    # the same super-sample for every selector seed; the selector differs
    other = draw_supersample(data, k, supersample_seed=3, selector_seed=6)
    assert torch.equal(other.ghost_of, pos) and not torch.equal(selector(k, 6), u)


def test_supersample_refuses_label_noise_and_too_few_spare_points():
    with pytest.raises(ConfigError, match="label_noise"):
        draw_supersample(load_dataset("mnist1d", n_train=100, label_noise=0.1), 5, supersample_seed=0,
                         selector_seed=0)
    with pytest.raises(ConfigError, match="beyond n_train"):
        draw_supersample(load_dataset("mnist1d"), 5, supersample_seed=0, selector_seed=0)
    with pytest.raises(ConfigError, match=r"\[1, 99\]"):
        draw_supersample(load_dataset("mnist1d", n_train=100), 100, supersample_seed=0, selector_seed=0)


def _linear_regression(n=12, k=2, d=3, seed=0):
    """A linear model with squared loss on n training points, k of them paired with a ghost."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.zero_()
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-0.5], [0.25]], dtype=torch.float64) + 0.3 * torch.randn(n, 1, generator=g,
                                                                                               dtype=torch.float64)
    gx = torch.randn(k, d, generator=g, dtype=torch.float64)
    gy = gx @ torch.tensor([[1.0], [-0.5], [0.25]], dtype=torch.float64) + 0.3 * torch.randn(
        k, 1, generator=g, dtype=torch.float64)
    obj = Objective(model, x, y, loss="mse", batch_size=5)
    ghosts = Objective(model, gx, gy, loss="mse", batch_size=5)
    return obj, BoundPairs(ghosts, torch.arange(k) * 3, n)


def test_cmi_prior_gap_is_half_the_pairs_gradient_difference_over_the_batch():
    obj, pairs = _linear_regression()
    opt = SGLD(list(obj.params().values()), lr=0.1, noise="isotropic", noise_trace=1e-2)
    batch = torch.tensor([0, 1, 2, 3, 5, 8])  # holds both paired positions (k = 2: 0 and 3)
    out = step_inputs(opt, obj, obj, batch, batch_size=6, seed=0, step=0, bound=True, pairs=pairs)
    w = params_to_vector(obj.params())
    per = []
    for i, j in ((0, 0), (3, 1)):  # training position, ghost row
        xm, ym = obj.x[i:i + 1], obj.y[i:i + 1]
        xg, yg = pairs.ghosts.x[j:j + 1], pairs.ghosts.y[j:j + 1]
        # genlab mse is (1/2) (f - y)^2 per point: d/dw = (x.w - y) x
        gm = (xm @ w - ym) * xm
        gg = (xg @ w - yg) * xg
        per.append((gm - gg).flatten())
    torch.testing.assert_close(out["prior_gap"], (per[0] + per[1]) / (2 * 6))
    # a batch with no paired point: the prior's forecast is exact and the term is zero
    none = step_inputs(opt, obj, obj, torch.tensor([1, 2, 4]), batch_size=3, seed=0, step=0, bound=True, pairs=pairs)
    assert float(none["prior_gap"].abs().max()) == 0.0


def _affine(fn, d):
    """``fn(w) = M w + c`` (exactly affine) as ``(M, c)``, from its values at 0 and the unit vectors."""
    c = fn(torch.zeros(d, dtype=torch.float64))
    M = torch.stack([fn(torch.eye(d, dtype=torch.float64)[i]) - c for i in range(d)], dim=1)
    return M, c


def _at(obj, w, f):
    with torch.no_grad():
        obj.model.weight.copy_(w.view_as(obj.model.weight))
    return f()


def test_expected_kl_sum_and_exact_cmi_of_a_linear_gaussian_chain():
    """Full-batch LD on linear regression is a linear-Gaussian chain given the selector U: W_T | U ~ N(m_U, S)
    with S the same for both U. So (i) the expected accounted sum E sum_t KL_t follows in closed form from the
    chain's means and covariances, and the SGLD runs' average over noise seeds must match it; (ii) the exact
    I(W_T; U | Z) is the mutual information of a fair coin and a two-Gaussian mixture, which the chain rule
    says E sum KL_t bounds from above."""
    n, k, d, lr, tau, T = 12, 1, 3, 0.2, 0.05, 6
    sigma2 = tau / d
    # the two training sets: U = 0 keeps the original point at the paired position, U = 1 the ghost
    obj0, pairs0 = _linear_regression(n=n, k=k)
    x1, y1 = obj0.x.clone(), obj0.y.clone()
    gx1, gy1 = pairs0.ghosts.x.clone(), pairs0.ghosts.y.clone()
    x1[0], gx1[0] = pairs0.ghosts.x[0], obj0.x[0]
    y1[0], gy1[0] = pairs0.ghosts.y[0], obj0.y[0]
    model1 = nn.Linear(d, 1, bias=False).double()
    obj1 = Objective(model1, x1, y1, loss="mse", batch_size=5)
    pairs1 = BoundPairs(Objective(model1, gx1, gy1, loss="mse", batch_size=5), torch.tensor([0]), n)
    expected, means, cov = [], [], None
    for obj, pairs in ((obj0, pairs0), (obj1, pairs1)):
        A, b = _affine(lambda w: _at(obj, w, lambda: params_to_vector(obj.grad())), d)     # grad = A w + b
        M, c = _affine(lambda w: _at(obj, w, lambda: pairs.gap(obj, None)), d)              # gap = M w + c
        mu, S, total = torch.zeros(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64), 0.0
        for _ in range(T):
            total += lr ** 2 / (2 * sigma2) * float((M @ mu + c).pow(2).sum() + torch.trace(M @ S @ M.T))
            F = torch.eye(d, dtype=torch.float64) - lr * A
            mu, S = F @ mu - lr * b, F @ S @ F.T + sigma2 * torch.eye(d, dtype=torch.float64)
        expected.append(total)
        means.append(mu)
        cov = S
    closed_form = 0.5 * (expected[0] + expected[1])  # E over the fair coin U
    # (i) Monte Carlo over noise seeds of the accounted sum, through SGLD and step_inputs
    runs = []
    for u, (obj, pairs) in enumerate(((obj0, pairs0), (obj1, pairs1))):
        for seed in range(300):
            with torch.no_grad():
                obj.model.weight.zero_()
            opt = SGLD(list(obj.params().values()), lr=lr, noise="isotropic", noise_trace=tau, seed=seed)
            for step in range(T):
                for p, gp in zip(obj.params().values(), obj.grad().values()):
                    p.grad = gp.clone()
                opt.step(**step_inputs(opt, obj, obj, None, batch_size=n, seed=seed, step=step, bound=True,
                                       pairs=pairs))
            runs.append(opt.info)
    mc = float(np.mean(runs))
    se = float(np.std(runs, ddof=1) / math.sqrt(len(runs)))
    assert abs(mc - closed_form) < 4 * se + 1e-12, (mc, closed_form, se)
    # (ii) the exact CMI: project on S^-1/2 (m1 - m0); a = half the Mahalanobis distance; I = a^2 - E log cosh(a Y)
    delta = means[1] - means[0]
    a = 0.5 * math.sqrt(float(delta @ torch.linalg.solve(cov, delta)))
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    exact = a ** 2 - float(np.sum(weights * np.log(np.cosh(a * (nodes + a)))) / math.sqrt(2 * math.pi))
    assert 0 < exact <= closed_form
    assert information_bound(exact, k, 1.0) <= information_bound(closed_form, k, 1.0)


def test_cmi_bound_by_hand_on_a_full_batch_run(tmp_path):
    """genlab train --sgld-bound cmi: the summary's terms recomputed from the run's own data."""
    from genlab.config import TrainConfig
    from genlab.optim.sgld import error_rate
    from genlab.train import train

    cfg = TrainConfig(dataset="mnist1d", n_train=200, model="mlp", width=8, optimizer="gld", lr=0.05, steps=3,
                      sgld_noise="isotropic", noise_trace=1e-2, sgld_bound="cmi", sgld_prior_size=196,
                      dtype="float64", seed=2, checkpoint_every=1, eval_every=1)
    run = train(cfg, tmp_path / "run", quiet=True)
    s = run.summary
    assert s["sgld_bound"] == "cmi" and s["sgld_bound_pairs"] == 4 and s["sgld_prior_size"] == 196
    assert s["sgld_error_gap_bound"] == pytest.approx(math.sqrt(2 * s["sgld_information"] / 4))
    assert s["sgld_bound_train_error"] == pytest.approx(error_rate(run.objective, torch.arange(200)))
    assert s["sgld_test_error_bound"] == pytest.approx(s["sgld_bound_train_error"] + s["sgld_error_gap_bound"])
    assert "sgld_test_error_bound_sharp" not in s  # four bound pairs: the sharpened form is for one
    # the terms are logged along the run, growing with the accounted information
    logged = [r for r in run.metrics if "sgld_error_gap_bound" in r]
    assert [r["step"] for r in logged] == [0, 1, 2, 3]
    assert logged[0]["sgld_information"] == 0 and logged[-1]["sgld_information"] == pytest.approx(
        s["sgld_information"])
    # the logged train-error term reuses the evaluation's accuracy: the same figure as the summary's
    assert logged[-1]["sgld_bound_train_error"] == pytest.approx(s["sgld_bound_train_error"])
    # the information by hand: isotropic Sigma = (tr / d) I; each full-batch step adds
    # (lr^2 d / (2 tr)) || (1/2n) sum_pairs (grad member - grad ghost) ||^2, the gradients at that step's weights
    data = run.data
    model = run.model
    obj = Objective(model, data.x_train, data.y_train, loss=data.loss, batch_size=64, classification=True)
    ghosts = Objective(model, data.x_ghost, data.y_ghost, loss=data.loss, batch_size=64, classification=True)
    g_last = params_to_vector(obj.grad(indices=data.ghost_of)) - params_to_vector(ghosts.grad())
    assert float(g_last.abs().max()) > 0  # the pairs' members and ghosts differ
    # replay the run from its seed with the building blocks and compare the accounted sum
    from genlab.train.run import load_data, make_model
    cfg_data = load_data(cfg)
    torch.testing.assert_close(cfg_data.x_train, data.x_train)
    fresh = make_model(cfg, cfg_data, torch.device("cpu"))
    obj = Objective(fresh, cfg_data.x_train, cfg_data.y_train, loss=data.loss, batch_size=64, classification=True)
    ghosts = Objective(fresh, cfg_data.x_ghost, cfg_data.y_ghost, loss=data.loss, batch_size=64, classification=True)
    d, by_hand = obj.num_params(), 0.0
    params = list(obj.params().values())
    opt = SGLD(params, lr=0.05, noise="isotropic", noise_trace=1e-2, seed=2)
    for step in range(3):
        gap = (4 / (2 * 200)) * (params_to_vector(obj.grad(indices=cfg_data.ghost_of)) - params_to_vector(ghosts.grad()))
        by_hand += 0.05 ** 2 * d / (2 * 1e-2) * float(gap.pow(2).sum())
        for p, gp in zip(params, obj.grad().values()):
            p.grad = gp.clone()
        opt.step()
    assert s["sgld_information"] == pytest.approx(by_hand, rel=1e-9)


def test_cmi_refuses_models_whose_train_mode_differs_and_settings_that_break_the_bound(tmp_path):
    from genlab.config import TrainConfig
    from genlab.train import train

    with pytest.raises(Exception, match="sgld_cov"):
        TrainConfig(optimizer="gld", sgld_bound="cmi", sgld_noise="gradcov", sgld_cov="batch")
    with pytest.raises(Exception, match="sgld_supersample_seed"):
        TrainConfig(optimizer="gld", sgld_supersample_seed=3)
    cfg = TrainConfig(dataset="mnist1d", n_train=200, model="mlp", width=8, depth=1, optimizer="gld", steps=1,
                      sgld_bound="cmi", dropout=0.5)
    with pytest.raises(ConfigError, match="train and eval mode"):
        train(cfg, tmp_path / "drop", quiet=True)


def test_bound_over_seeds_against_hand_computed_student_t_limits():
    from scipy import stats

    from genlab.optim import bound_over_seeds

    info, err = [0.02, 0.05, 0.03, 0.06], [0.1, 0.0, 0.2, 0.1]
    out = bound_over_seeds(info, err, points=1, subgaussian=1.0, confidence=0.9)
    mean, sd = np.mean(info), np.std(info, ddof=1)
    up = mean + stats.t.ppf(0.9, 3) * sd / 2
    assert out["gap_bound"] == pytest.approx(math.sqrt(2 * mean))
    assert out["gap_bound_upper"] == pytest.approx(math.sqrt(2 * up))
    e_up = np.mean(err) + stats.t.ppf(0.9, 3) * np.std(err, ddof=1) / 2
    assert out["test_error_bound_upper"] == pytest.approx(e_up + math.sqrt(2 * up))
    one = bound_over_seeds([0.02], [0.1], points=1)
    assert one["gap_bound_upper"] is None and one["test_error_bound"] == pytest.approx(0.1 + 0.2)
    with pytest.raises(ValueError, match="one training error per run"):
        bound_over_seeds([0.1, 0.2], [0.1], points=1)


def test_monte_carlo_the_cmi_bound_is_above_the_average_measured_gap():
    """Many seeds of full-batch LD on scikit-learn digits, each with its own super-sample (one pair, the
    papers' choice), selector and noise: the bound sqrt(2 E[I] / 1) is below 1 -- so the check is not
    trivially true -- and at or above the average measured gap (ghost error - member error)."""
    from genlab.optim import bound_over_seeds
    from genlab.optim.sgld import error_rate

    base = load_dataset("digits", n_train=500)
    k, gaps, infos, errs, tests = 1, [], [], [], []
    for seed in range(30):
        data = draw_supersample(base, k, supersample_seed=seed, selector_seed=seed)
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
        obj = Objective(model, data.x_train, data.y_train, loss="ce", batch_size=512, classification=True)
        pairs = BoundPairs(Objective(model, data.x_ghost, data.y_ghost, loss="ce", batch_size=512,
                                     classification=True), data.ghost_of, len(data.x_train))
        opt = SGLD(list(model.parameters()), lr=0.5, noise="isotropic", noise_trace=3.0, seed=seed)
        for step in range(100):
            opt.zero_grad()
            obj.accumulate_grad()
            opt.step(**step_inputs(opt, obj, obj, None, batch_size=obj.n, seed=seed, step=step, bound=True,
                                   pairs=pairs))
        member, ghost = pairs.errors(obj)
        gaps.append(ghost - member)
        infos.append(opt.info)
        errs.append(error_rate(obj, torch.arange(obj.n)))
        test = Objective(model, base.x_test, base.y_test, loss="ce", batch_size=512, classification=True)
        tests.append(error_rate(test, torch.arange(test.n)))
    agg = bound_over_seeds(infos, errs, points=k, subgaussian=1.0, single_pair=True)
    measured = float(np.mean(gaps))
    assert agg["gap_bound"] < 1 and np.mean(errs) < 0.1  # it learned, and the bound says something
    assert agg["gap_bound"] >= measured, (agg["gap_bound"], measured)
    assert agg["gap_bound_upper"] >= agg["gap_bound"]
    # the sharpened bound on the expected test error: above the measured test error, below the stated bound
    assert np.mean(tests) <= agg["test_error_bound_sharp"] < agg["test_error_bound"], (np.mean(tests), agg)
    assert agg["test_error_bound_sharp"] <= agg["test_error_bound_sharp_upper"] <= agg["test_error_bound_upper"]


def test_sign_gap_bound_against_a_dense_grid_and_the_square_root_form():
    """The infimum over lambda, checked against brute force; at p = 1 it is within sqrt(2 I) (Steinke and
    Zakynthinou's form), for small I it approaches sqrt(2 p I), and it grows with p and with I."""
    from genlab.bounds.infotheory import sign_gap_bound

    lam = np.exp(np.linspace(np.log(1e-4), np.log(60), 200001))
    for info, p in [(1e-4, 0.05), (0.01, 0.3), (0.05, 1.0), (0.7, 0.5), (0.5, 1.0)]:
        mgf = np.log1p(p * (np.cosh(np.minimum(lam, 700)) - 1))
        grid = float(np.min((info + mgf) / lam))
        got = sign_gap_bound(info, p)
        assert got <= grid + 1e-9 and got >= grid * (1 - 1e-6), (info, p, got, grid)
    assert sign_gap_bound(0.05, 1.0) <= math.sqrt(0.1)
    assert 1.0 <= sign_gap_bound(2.0, 1.0) <= 1.001  # I > log 2: the infimum is the limit lam -> inf
    assert sign_gap_bound(1e-6, 0.2) == pytest.approx(math.sqrt(2 * 0.2 * 1e-6), rel=1e-3)
    assert sign_gap_bound(0.01, 0.2) < sign_gap_bound(0.01, 0.4) < sign_gap_bound(0.02, 0.4)
    assert sign_gap_bound(0.01, 0.0) == 0.0


def _gaussian_channel(m: float, sigma: float, c: float) -> tuple[float, float, float]:
    """A pair and a selector in closed form: W = (2U - 1) m + sigma N; l_0 = 1{W > c}, l_1 = 1{W < -c}
    (the member is fit: W moves away from where it errs). Returns the member's error R, the ghost's T and the
    exact I(W; U) by quadrature."""
    from scipy import integrate, stats

    member = float(stats.norm.sf((c + m) / sigma))          # P(-m + sigma N > c)
    ghost = float(stats.norm.cdf((m - c) / sigma))          # P(-m + sigma N < -c)
    f0 = lambda w: stats.norm.pdf(w, -m, sigma)  # noqa: E731
    f1 = lambda w: stats.norm.pdf(w, m, sigma)  # noqa: E731
    integrand = lambda w: f0(w) * (math.log(2) - np.logaddexp(0.0, (f1(w) and math.log(f1(w) + 1e-300))  # noqa: E731
                                                              - math.log(f0(w) + 1e-300)))
    info, _ = integrate.quad(integrand, -m - 12 * sigma, m + 12 * sigma, limit=400)
    return member, ghost, info


def test_pair_sign_bound_holds_on_a_gaussian_channel_with_exact_mutual_information():
    """Everything exact: the member's and the ghost's errors and I(W; U) of a two-point channel. The sharpened
    bound is at or above the ghost's error everywhere on the grid, never above R + sqrt(2 I), and strictly
    tighter (and non-vacuous) where the pair's errors are rare."""
    from genlab.bounds.infotheory import pair_sign_bound, sign_gap_bound

    tighter = 0
    for m in (0.02, 0.1, 0.3, 1.0):
        for sigma in (0.5, 1.0, 2.0):
            for c in (0.0, 0.5, 1.5, 3.0):
                r, t, info = _gaussian_channel(m, sigma, c)
                assert 0 <= info <= math.log(2) + 1e-9
                assert t - r <= sign_gap_bound(info, r + t) + 1e-9  # the inequality before solving for T
                bound = pair_sign_bound(info, r)
                assert bound >= t - 1e-9, (m, sigma, c, r, t, info, bound)
                assert bound <= r + math.sqrt(2 * info) + 1e-9
                if bound < 1 and bound < 0.8 * (r + math.sqrt(2 * info)):
                    tighter += 1
    assert tighter >= 10


def test_pair_sign_bound_closed_forms():
    """R = 0 and small I: p = T is small too, log(1 + T (cosh lam - 1)) ~ T (cosh lam - 1), so the root is
    T = I / max_lam (lam + 1 - cosh lam) = I / (asinh 1 + 1 - sqrt 2) = 2.1405 I (a fast rate); I = 0 leaves
    exactly R; it increases in I and R."""
    from genlab.bounds.infotheory import pair_sign_bound

    assert pair_sign_bound(0.0, 0.13) == pytest.approx(0.13, abs=1e-8)
    assert pair_sign_bound(1e-5, 0.0) == pytest.approx(1e-5 / (math.asinh(1) + 1 - math.sqrt(2)), rel=1e-3)
    assert pair_sign_bound(0.01, 0.1) < pair_sign_bound(0.02, 0.1) < pair_sign_bound(0.02, 0.2)
    # against the quadratic-approximation root R + I + sqrt(I^2 + 4 R I) (B(p) ~ sqrt(2 p I) for small I)
    r, i = 0.05, 1e-4
    assert pair_sign_bound(i, r) == pytest.approx(r + i + math.sqrt(i * i + 4 * r * i), rel=1e-3)
    assert pair_sign_bound(5.0, 0.3) == 1.0
    with pytest.raises(ValueError):
        pair_sign_bound(-1.0, 0.1)


def test_one_bound_pair_run_reports_the_sharpened_bound(tmp_path):
    from genlab.bounds.infotheory import pair_sign_bound
    from genlab.config import TrainConfig
    from genlab.train import train

    cfg = TrainConfig(dataset="mnist1d", n_train=200, model="mlp", width=8, optimizer="gld", lr=0.05, steps=3,
                      sgld_noise="isotropic", noise_trace=1e-2, sgld_bound="cmi", seed=1, eval_every=3)
    s = train(cfg, tmp_path / "run", quiet=True).summary
    assert s["sgld_bound_pairs"] == 1
    assert s["sgld_test_error_bound_sharp"] == pytest.approx(
        pair_sign_bound(s["sgld_information"], s["sgld_bound_train_error"]))
    assert s["sgld_bound_train_error"] <= s["sgld_test_error_bound_sharp"] <= s["sgld_test_error_bound"]
