"""IVON and variational GD: the reduction IVON -> VGD, the update by hand, thresholds, resume, predictive."""

import copy
import math

import pytest
import torch

from genlab.optim import IVON, VariationalGD, posterior_predictive, variational_factor, vl_threshold


def quadratic(H):
    """Loss 0.5 w^T H w on one parameter vector, with a closure as the training loop builds it."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))

    def closure():
        w.grad = None
        loss = 0.5 * w @ H @ w
        loss.backward()
        return loss

    return w, closure


H = torch.diag(torch.tensor([3.0, 1.0, 0.2], dtype=torch.float64))


def test_ivon_with_frozen_hessian_and_no_momentum_is_variational_gd():
    ess, h0, lr = 50.0, 2.0, 0.1
    w1, c1 = quadratic(H)
    w2, c2 = quadratic(H)
    ivon = IVON([w1], lr=lr, ess=ess, hess_init=h0, beta1=0.0, beta2=1.0, weight_decay=0.0, mc_samples=3, seed=4)
    vgd = VariationalGD([w2], lr=lr, sigma=1 / math.sqrt(ess * h0), mc_samples=3, seed=4)
    for _ in range(10):
        ivon.step(c1)
        vgd.step(c2)
    torch.testing.assert_close(w1.detach(), w2.detach(), rtol=0, atol=1e-14)
    torch.testing.assert_close(ivon.state[w1]["h"], torch.full_like(w1, h0))


def test_ivon_step_by_hand():
    # one step, one sample, written out from the update rule
    w, closure = quadratic(H)
    m0 = w.detach().clone()
    opt = IVON([w], lr=0.05, ess=10.0, hess_init=0.5, beta1=0.9, beta2=0.8, weight_decay=0.1, seed=2)
    gen = torch.Generator().manual_seed(2)
    sigma = 1 / math.sqrt(10.0 * (0.5 + 0.1))
    eps = sigma * torch.randn(3, generator=gen, dtype=torch.float64)
    g_hat = H @ (m0 + eps)
    h_hat = g_hat * eps / sigma ** 2
    g = 0.1 * g_hat
    h0 = torch.full((3,), 0.5, dtype=torch.float64)
    h = 0.8 * h0 + 0.2 * h_hat + 0.04 * (h0 - h_hat) ** 2 / (2 * (h0 + 0.1))
    expected = m0 - 0.05 * (0.5 + 0.1) * (g / 0.1 + 0.1 * m0) / (h + 0.1)
    opt.step(closure)
    torch.testing.assert_close(w.detach(), expected)
    torch.testing.assert_close(opt.state[w]["h"], h)
    assert bool((opt.state[w]["h"] > 0).all())


def test_hessian_estimate_is_unbiased_on_a_quadratic():
    # E[grad(m + eps) * eps / sigma^2] = diag(H) (Stein / reparameterisation); per-sample std of the first
    # entry ~ H_00 |m_0| / sigma = 6, so 4,000 samples give a standard error of 0.095
    w, closure = quadratic(H)
    opt = IVON([w], lr=1e-9, ess=4.0, hess_init=1.0, beta1=0.0, beta2=0.0, weight_decay=0.0, mc_samples=4000,
               seed=0)
    _, _, h_hat = opt._sample_gradients(closure, hessian=True)
    torch.testing.assert_close(h_hat[0], torch.diagonal(H), atol=0.4, rtol=0)


def test_vl_threshold_solves_its_cubic_and_falls_with_noise_and_fewer_samples():
    lr = 0.1
    for z in (0.5, 10.0, 1e4):
        t = vl_threshold(lr, z)
        assert t + t ** 3 / z == pytest.approx(2 / lr, rel=1e-12)
        assert 0 < variational_factor(lr, z) < 1
    assert vl_threshold(lr, math.inf) == 2 / lr
    # z = S c / sigma^2: larger sigma or fewer samples -> smaller z -> lower threshold
    c = 1.0
    assert vl_threshold(lr, 1 * c / 0.1) < vl_threshold(lr, 4 * c / 0.1) < vl_threshold(lr, 4 * c / 0.01)


def test_vgd_on_a_quadratic_descends_in_expectation_iff_below_the_threshold():
    # 1-D: E[x'^2] = (1 - lr h)^2 x^2 + lr^2 h^2 sigma^2 / S; descent iff h + h^3 / z < 2 / lr, z = S c / sigma^2
    lr, sigma, S, x = 0.1, 0.3, 2, 0.5
    for h in (5.0, 12.0, 19.0):
        c = (h * x) ** 2
        predicted = h < vl_threshold(lr, S * c / sigma ** 2)
        expected_sq = (1 - lr * h) ** 2 * x ** 2 + lr ** 2 * h ** 2 * sigma ** 2 / S
        assert (expected_sq < x ** 2) == predicted
    w = torch.nn.Parameter(torch.tensor([x], dtype=torch.float64))
    Hq = torch.tensor([[12.0]], dtype=torch.float64)
    finals = []
    for seed in range(4000):
        w.data.fill_(x)
        opt = VariationalGD([w], lr=lr, sigma=sigma, mc_samples=S, seed=seed)

        def closure():
            w.grad = None
            loss = 0.5 * w @ Hq @ w
            loss.backward()
            return loss

        opt.step(closure)
        finals.append(float(w.detach()) ** 2)
    expected = (1 - lr * 12) ** 2 * x ** 2 + lr ** 2 * 144 * sigma ** 2 / S
    assert sum(finals) / len(finals) == pytest.approx(expected, rel=0.05)


def test_student_t_draws_have_the_t_variance():
    w = torch.nn.Parameter(torch.zeros(20000, dtype=torch.float64))
    opt = VariationalGD([w], lr=0.1, sigma=0.5, posterior="student-t", dof=5, seed=0)
    with opt.sampled_params() as eps:
        assert float(eps[0].var()) == pytest.approx(0.25 * 5 / 3, rel=0.08)
    assert float(w.detach().abs().max()) == 0.0  # restored to the mean
    with pytest.raises(ValueError, match="integer > 2"):
        VariationalGD([w], lr=0.1, posterior="student-t", dof=2)
    with pytest.raises(ValueError, match="posterior must be"):
        VariationalGD([w], lr=0.1, posterior="laplace")


def test_ivon_resumes_exactly_from_its_state_dict():
    w1, c1 = quadratic(H)
    opt1 = IVON([w1], lr=0.05, ess=20.0, mc_samples=2, seed=3)
    for _ in range(3):
        opt1.step(c1)
    saved_w, saved = w1.detach().clone(), copy.deepcopy(opt1.state_dict())  # a checkpoint serialises it
    for _ in range(3):
        opt1.step(c1)
    w2, c2 = quadratic(H)
    w2.data.copy_(saved_w)
    opt2 = IVON([w2], lr=0.05, ess=20.0, mc_samples=2, seed=99)
    opt2.load_state_dict(saved)
    for _ in range(3):
        opt2.step(c2)
    torch.testing.assert_close(w2.detach(), w1.detach(), rtol=0, atol=0)


def test_posterior_predictive_averages_k_sampled_forward_passes():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    opt = IVON(model.parameters(), lr=0.1, ess=10.0, seed=1)
    mean_out = model(x).detach().clone()
    probs = posterior_predictive(opt, model, x, samples=8)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(model(x).detach(), mean_out)  # mean restored
    gen_state = opt.generator.get_state()
    manual = []
    for _ in range(8):
        with opt.sampled_params():
            manual.append(model(x).softmax(-1).detach())
    opt.generator.set_state(gen_state)
    torch.testing.assert_close(posterior_predictive(opt, model, x, samples=8), torch.stack(manual).mean(0))


def test_ivon_and_vgd_train_through_the_loop_and_resume_exactly(tmp_path):
    from test_train import Crash, assert_same_params

    from genlab.config import TrainConfig
    from genlab.train import train

    for optimizer, extra in (("ivon", dict(mc_samples=2, posterior="student-t")), ("vgd", dict(vgd_sigma=0.02))):
        cfg = TrainConfig(dataset="mnist1d", n_train=300, model="mlp", width=16, optimizer=optimizer, lr=0.05,
                          batch_size=50, seed=1, steps=12, checkpoint_every=4, eval_every=4, **extra)
        straight = train(cfg, tmp_path / f"{optimizer}-straight", quiet=True)
        with pytest.raises(Crash.Boom):
            train(cfg, tmp_path / f"{optimizer}-crashed", callbacks=[Crash(at=10)], quiet=True)
        train(cfg, tmp_path / f"{optimizer}-crashed", quiet=True)
        assert_same_params(tmp_path / f"{optimizer}-straight", tmp_path / f"{optimizer}-crashed")
        assert straight.summary["train_loss"] < 2.4


def test_tracker_records_the_variational_threshold_for_vgd(tmp_path):
    from genlab.config import TrainConfig
    from genlab.train import train

    cfg = TrainConfig(dataset="mnist1d", n_train=200, model="mlp", width=16, activation="tanh", loss="mse",
                      optimizer="vgd", lr=0.1, steps=4, vgd_sigma=0.01, mc_samples=2, track_sharpness=2)
    run = train(cfg, tmp_path / "r", quiet=True)
    rec = [r for r in run.metrics if "vl_threshold" in r]
    assert len(rec) == 3
    for r in rec:
        z = r["vl_z"]
        assert z == pytest.approx(2 * r["grad_projections"][0] / 0.01 ** 2, rel=1e-4)
        assert r["vl_threshold"] == pytest.approx(vl_threshold(0.1, z), rel=1e-9) and r["vl_threshold"] < 20
