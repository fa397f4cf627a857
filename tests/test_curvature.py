"""Curvature operators and solvers against exact dense references (float64, tiny models)."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian, jacrev

from genlab.curvature import (EmpiricalFisherOperator, GaussNewtonOperator, HessianOperator, PreconditionedOperator,
                              gradient_covariance, hutchinson, hutchpp, jacobian_norms, lanczos, power_iteration, slq)
from genlab.objective import Objective, params_to_vector, vector_to_params


def tiny_objective(loss="ce", n=40, batch_size=16, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(n, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (n,)) if loss == "ce" else torch.randn(n, 3, dtype=torch.float64)
    return Objective(model, x, y, loss=loss, batch_size=batch_size)


def exact_hessian(obj):
    params = {k: p.detach().clone() for k, p in obj.params().items()}
    flat = params_to_vector(params)

    def f(v):
        out = functional_call(obj.model, vector_to_params(v, params), (obj.x,))
        from genlab.objective import loss_from_outputs
        return loss_from_outputs(out, obj.y, obj.loss_name)

    return hessian(f)(flat)


@pytest.fixture(params=["ce", "mse"])
def obj(request):
    return tiny_objective(request.param)


@pytest.mark.parametrize("cache", [True, False])
def test_hessian_operator_matches_torch_func_hessian(obj, cache):
    H = HessianOperator(obj, cache_graph=cache)
    ref = exact_hessian(obj)
    assert torch.allclose(H.dense(), ref, atol=1e-12, rtol=1e-10)
    assert H.matvecs == H.dim
    if cache:  # the cached graph also gives the loss and the gradient at the same parameters
        assert H.loss == pytest.approx(float(obj.loss()), rel=1e-12)
        assert torch.allclose(H.gradient, params_to_vector(obj.grad()), atol=1e-14)


def test_lanczos_top_eigenvalues_match_eigvalsh(obj):
    H = HessianOperator(obj)
    exact = np.linalg.eigvalsh(exact_hessian(obj).numpy())[::-1]
    res = lanczos(H, k=3, tol=1e-10, generator=torch.Generator().manual_seed(0))
    assert res.converged
    np.testing.assert_allclose(res.eigenvalues.numpy(), exact[:3], rtol=1e-6)
    # the vectors are eigenvectors: ||H u - lambda u|| small, orthonormal
    for lam, u in zip(res.eigenvalues, res.eigenvectors.T):
        assert float((H.matvec(u) - lam * u).norm()) < 1e-7 * abs(float(lam))
    gram = res.eigenvectors.T @ res.eigenvectors
    assert torch.allclose(gram, torch.eye(3, dtype=gram.dtype), atol=1e-10)


def test_lanczos_largest_magnitude_and_residual_guarantee():
    # a diagonal operator with known spectrum, a close top pair, and a large negative eigenvalue
    from genlab.curvature.operators import CurvatureOperator

    lam = torch.cat([torch.tensor([10.0, 9.99, -12.0]), torch.linspace(-1, 1, 197)]).double()

    class Diag(CurvatureOperator):
        def _matvec(self, v):
            return lam * v

    op = Diag(200, torch.float64, "cpu")
    la = lanczos(op, k=2, tol=1e-6, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(la.eigenvalues.numpy(), [10.0, 9.99], rtol=1e-6)
    lm = lanczos(Diag(200, torch.float64, "cpu"), k=1, which="LM", tol=1e-6)
    assert float(lm.eigenvalues[0]) == pytest.approx(-12.0, rel=1e-6)
    # PyHessian's stopping rule stops early and wrong on a close pair; the residual tells
    pw = power_iteration(Diag(200, torch.float64, "cpu"), tol=1e-3, generator=torch.Generator().manual_seed(1))
    assert pw.residuals[0] > 1e-4


def test_gap_error_estimate_waits_for_the_ritz_value_to_settle():
    from genlab.curvature.lanczos import _tail_estimate
    from genlab.curvature.operators import CurvatureOperator

    # the tail of a geometric sequence of increments: 1, 0.5 -> 0.5 more to come
    assert _tail_estimate([0.0, 1.0]) == float("inf")
    assert _tail_estimate([0.0, 1.0, 1.5]) == pytest.approx(0.5)
    assert _tail_estimate([0.0, 1.0, 1.1]) == pytest.approx(0.1)  # floored at the last increment
    assert _tail_estimate([0.0, 1.0, 2.5]) == float("inf")  # not converging yet

    def diag(top_pair):
        lam = torch.cat([torch.tensor(top_pair), torch.linspace(-1, 5, 298)]).double()

        class Diag(CurvatureOperator):
            def _matvec(self, v):
                return lam * v
        return Diag(300, torch.float64, "cpu")

    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        # warm start near the top eigenvector (as in tracking): the estimate holds, in fewer products than
        # the guaranteed residual rule takes
        v0 = torch.zeros(300, dtype=torch.float64)
        v0[0] = 1.0
        v0 = v0 + 0.02 * torch.randn(300, generator=gen, dtype=torch.float64)
        res = lanczos(diag([10.0, 9.99]), 1, tol=1e-4, error="gap", v0=v0)
        guaranteed = lanczos(diag([10.0, 9.99]), 1, tol=1e-4, v0=v0)
        assert 3 <= res.matvecs < guaranteed.matvecs
        assert abs(float(res.eigenvalues[0]) - 10.0) / 10.0 <= 1e-4


def test_warm_started_lanczos_needs_few_products(obj):
    H = HessianOperator(obj)
    cold = lanczos(H, k=1, tol=1e-6, generator=torch.Generator().manual_seed(0))
    noisy = cold.eigenvectors[:, 0] + 1e-3 * torch.randn(H.dim, dtype=torch.float64)
    warm = lanczos(H, k=1, tol=1e-6, v0=noisy)
    assert warm.matvecs < cold.matvecs
    assert float(warm.eigenvalues[0]) == pytest.approx(float(cold.eigenvalues[0]), rel=1e-6)


def test_power_iteration_converges_on_a_separated_top_eigenvalue(obj):
    H = HessianOperator(obj)
    exact = np.linalg.eigvals(exact_hessian(obj).numpy())
    top = exact[np.argmax(np.abs(exact))].real
    res = power_iteration(H, tol=1e-10, max_iter=2000, generator=torch.Generator().manual_seed(0))
    assert float(res.eigenvalues[0]) == pytest.approx(top, rel=1e-6)


def test_trace_estimators(obj):
    H = HessianOperator(obj)
    exact = float(torch.trace(exact_hessian(obj)))
    d = H.dim
    # Hutch++ with a sketch covering the whole space is exact
    full = hutchpp(H, num_matvecs=3 * d, generator=torch.Generator().manual_seed(0))
    assert full.value == pytest.approx(exact, rel=1e-6)
    # Hutchinson is unbiased: within 4 standard errors
    est = hutchinson(H, num_samples=400, generator=torch.Generator().manual_seed(0))
    assert abs(est.value - exact) < 4 * est.std_error
    assert est.matvecs == 400


def test_hutchpp_beats_hutchinson_on_a_dominated_spectrum():
    from genlab.curvature.operators import CurvatureOperator

    lam = torch.cat([torch.tensor([100.0, 50.0, 20.0, 10.0]), 0.01 * torch.rand(296, generator=torch.Generator().manual_seed(0))]).double()
    Qm, _ = torch.linalg.qr(torch.randn(300, 300, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    A = Qm @ torch.diag(lam) @ Qm.T

    class Dense(CurvatureOperator):
        def _matvec(self, v):
            return A @ v

    exact = float(lam.sum())
    err_h = [abs(hutchinson(Dense(300, torch.float64, "cpu"), 30, generator=torch.Generator().manual_seed(s)).value
                 - exact) for s in range(20)]
    err_pp = [abs(hutchpp(Dense(300, torch.float64, "cpu"), 30, generator=torch.Generator().manual_seed(s)).value
                  - exact) for s in range(20)]
    assert np.mean(err_pp) < 0.1 * np.mean(err_h)


def test_slq_density_is_exact_with_a_full_basis(obj):
    H = HessianOperator(obj)
    eig = np.linalg.eigvalsh(exact_hessian(obj).numpy())
    d = H.dim
    dens = slq(H, steps=d, probes=torch.eye(d, dtype=torch.float64))
    grid = np.linspace(eig.min() - 0.1, eig.max() + 0.1, 200)
    sigma = 0.05 * (eig.max() - eig.min())
    ref = np.mean(np.exp(-0.5 * ((grid[:, None] - eig[None]) / sigma) ** 2), axis=1) / (sigma * np.sqrt(2 * np.pi))
    got = dens.smoothed(grid, sigma)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9 * ref.max())
    assert dens.moment(lambda t: t) == pytest.approx(eig.mean(), rel=1e-6)


def test_slq_random_probes_quadrature_is_exact_for_low_degree(obj):
    H = HessianOperator(obj)
    A = exact_hessian(obj)
    g = torch.Generator().manual_seed(3)
    dens = slq(H, num_probes=5, steps=4, generator=g)
    # Gauss quadrature with m nodes integrates polynomials up to degree 2m-1 exactly, per probe
    probes = __import__("genlab.curvature.trace", fromlist=["rademacher"]).rademacher(
        (H.dim, 5), torch.Generator().manual_seed(3), torch.float64, "cpu")
    A3 = torch.linalg.matrix_power(A, 3)
    want = float(np.mean([float(z @ A3 @ z) / float(z @ z) for z in probes.T]))
    assert dens.moment(lambda t: t ** 3) == pytest.approx(want, rel=1e-6)


def test_gauss_newton_matches_explicit_jacobians(obj):
    G = GaussNewtonOperator(obj)
    params = {k: p.detach().clone() for k, p in obj.params().items()}
    flat = params_to_vector(params)
    J = jacrev(lambda v: functional_call(obj.model, vector_to_params(v, params), (obj.x,)))(flat)  # (n, out, d)
    out = obj.model(obj.x).detach()
    if obj.loss_name == "mse":
        Hout = torch.eye(3, dtype=torch.float64).expand(obj.n, 3, 3)
    else:
        p = torch.softmax(out, dim=1)
        Hout = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    ref = torch.einsum("nod,nop,npe->de", J, Hout, J) / obj.n
    assert torch.allclose(G.dense(), ref, atol=1e-12)
    assert float(torch.linalg.eigvalsh(ref).min()) > -1e-10  # PSD


def test_gauss_newton_equals_hessian_for_a_linear_model_with_mse():
    torch.manual_seed(0)
    obj = Objective(nn.Linear(5, 2).double(), torch.randn(30, 5).double(), torch.randn(30, 2).double(), "mse")
    assert torch.allclose(GaussNewtonOperator(obj).dense(), HessianOperator(obj).dense(), atol=1e-12)


def test_empirical_fisher_and_gradient_covariance_match_explicit_matrices(obj):
    grads = []
    for i in range(obj.n):
        obj.model.zero_grad()
        from genlab.objective import loss_from_outputs
        loss_from_outputs(obj.model(obj.x[i:i + 1]), obj.y[i:i + 1], obj.loss_name).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in obj.model.parameters()]).clone())
    G = torch.stack(grads)
    F_ref = G.T @ G / obj.n
    assert torch.allclose(EmpiricalFisherOperator(obj).dense(), F_ref, atol=1e-12)
    C = (G - G.mean(0)).T @ (G - G.mean(0)) / obj.n
    exact = torch.linalg.eigvalsh(C).flip(0)
    cov = gradient_covariance(obj, top_k=5)
    assert torch.allclose(cov.eigenvalues, exact[:5], rtol=1e-8, atol=1e-12)
    assert cov.trace == pytest.approx(float(torch.trace(C)), rel=1e-10)
    for lam, v in zip(cov.eigenvalues, cov.eigenvectors.T):
        assert torch.allclose(C @ v, lam * v, atol=1e-10)
    second = gradient_covariance(obj, top_k=3, centered=False)
    assert torch.allclose(second.eigenvalues, torch.linalg.eigvalsh(F_ref).flip(0)[:3], rtol=1e-8)


def test_jacobian_norms_match_a_jacrev_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 4)).double()
    x = torch.randn(25, 3, 4, dtype=torch.float64)
    obj = Objective(model, x, torch.randint(0, 4, (25,)), "ce", batch_size=10)
    norms = jacobian_norms(obj)
    for i in range(25):
        J = jacrev(lambda xi: model(xi.unsqueeze(0)).squeeze(0))(x[i]).reshape(4, 12).detach()
        assert float(norms.frobenius[i]) == pytest.approx(float(torch.linalg.norm(J)), rel=1e-12)
        assert float(norms.spectral[i]) == pytest.approx(float(torch.linalg.svdvals(J)[0]), rel=1e-10)
    s = norms.summary()
    assert s["jacobian_spec_max"] == pytest.approx(float(norms.spectral.max()))
    assert s["jacobian_spec_max"] <= s["jacobian_fro_max"] + 1e-12


def test_preconditioned_operator_has_the_eigenvalues_of_p_inverse_h(obj):
    H = HessianOperator(obj)
    p = torch.rand(H.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.1
    A = exact_hessian(obj)
    ref = np.sort(np.linalg.eigvals((torch.diag(1 / p) @ A).numpy()).real)[::-1]
    res = lanczos(PreconditionedOperator(H, p), k=2, tol=1e-10)
    np.testing.assert_allclose(res.eigenvalues.numpy(), ref[:2], rtol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        PreconditionedOperator(H, -p)


def test_float32_operators_agree_with_float64():
    obj64 = tiny_objective("mse")
    model32 = obj64.model.float()
    obj32 = Objective(model32, obj64.x.float(), obj64.y.float(), "mse", batch_size=16)
    top32 = lanczos(HessianOperator(obj32), tol=1e-4, generator=torch.Generator().manual_seed(0))
    obj64 = Objective(model32.double(), obj32.x.double(), obj32.y.double(), "mse", batch_size=16)
    top64 = lanczos(HessianOperator(obj64), tol=1e-10, generator=torch.Generator().manual_seed(0))
    assert top32.eigenvalues.dtype == torch.float64  # reported in float64 whatever the compute dtype
    assert float(top32.eigenvalues[0]) == pytest.approx(float(top64.eigenvalues[0]), rel=1e-4)


def _dense_op(A):
    from genlab.curvature.operators import CurvatureOperator

    class Dense(CurvatureOperator):
        def _matvec(self, v):
            return A @ v

    return Dense(A.shape[0], A.dtype, "cpu")


@pytest.mark.parametrize("max_basis", [40, 12, 7])
def test_thick_restart_lanczos_keeps_its_basis_bounded_and_its_guarantee(max_basis):
    """A capped basis (thick restarts) reaches the same top-5 as scipy-free dense eigh, to the residual bound,
    on a spectrum with no gap (the case that needs many restarts), and never holds more than max_basis + 1."""
    d = 300
    Qm, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    lam = torch.linspace(0, 1, d, dtype=torch.float64) ** 0.5
    A = Qm @ torch.diag(lam) @ Qm.T
    ref = torch.linalg.eigvalsh(A).flip(0)[:5]
    res = lanczos(_dense_op(A), 5, tol=1e-6, max_iter=5000, max_basis=max_basis, generator=torch.Generator().manual_seed(1))
    assert res.converged and res.basis_columns <= max_basis + 1
    free = lanczos(_dense_op(A), 5, tol=1e-6, max_iter=5000, generator=torch.Generator().manual_seed(1))
    if max_basis < 40:
        assert res.matvecs > free.matvecs  # restarts happened and cost products
    for i in range(5):
        u = res.eigenvectors[:, i]
        true_res = float((A @ u - res.eigenvalues[i] * u).norm())
        assert true_res == pytest.approx(res.residuals[i], rel=1e-3, abs=1e-12)  # A Q = Q T + beta q e^T held
        assert abs(float(res.eigenvalues[i] - ref[i])) <= res.residuals[i] + 1e-12  # the residual bound
        assert float(u.norm()) == pytest.approx(1.0, abs=1e-10)


def test_thick_restart_lanczos_rejects_a_basis_too_small_for_k():
    A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_basis must be at least k \\+ 2"):
        lanczos(_dense_op(A), 3, max_basis=4)
    top = lanczos(_dense_op(A), 3, tol=1e-10, max_basis=5, max_iter=500, generator=torch.Generator().manual_seed(0))
    assert [round(float(x), 8) for x in top.eigenvalues] == [10.0, 9.0, 8.0]
