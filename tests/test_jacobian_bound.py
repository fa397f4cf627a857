"""MacDonald et al.'s Jacobian quantities: the proven lower bounds hold against exact Gauss-Newton eigenvalues."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from genlab.bounds.jacobian import first_linear_layer, jacobian_terms, per_sample_gauss_newton_tops
from genlab.curvature import GaussNewtonOperator
from genlab.curvature.jacobian import jacobian_norms
from genlab.models import build_model
from genlab.objective import Objective, params_to_vector, vector_to_params


def objective(loss, n=30, seed=0):
    torch.manual_seed(seed)
    model = build_model("mlp", (6,), 3, width=8, depth=2, activation="tanh").double()
    x = torch.randn(n, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (n,)) if loss == "ce" else torch.nn.functional.one_hot(
        torch.randint(0, 3, (n,)), 3).double()
    return Objective(model, x, y, loss, batch_size=7)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_per_sample_terms_match_explicit_jacobians_and_bound_gauss_newton(loss):
    obj = objective(loss)
    tops = per_sample_gauss_newton_tops(obj, max_entries=500)   # small chunks on purpose
    params = {k: p.detach().clone() for k, p in obj.params().items()}
    flat = params_to_vector(params)
    for i in (0, 7, 29):
        J = jacrev(lambda v: functional_call(obj.model, vector_to_params(v, params), (obj.x[i:i + 1],))[0])(flat)
        out = obj.model(obj.x[i:i + 1]).detach()[0]
        if loss == "mse":
            C = torch.eye(3, dtype=torch.float64)
        else:
            p = torch.softmax(out, 0)
            C = torch.diag(p) - torch.outer(p, p)
        want = torch.linalg.eigvalsh(J.T @ C @ J)[-1]
        assert float(tops[i]) == pytest.approx(float(want), rel=1e-8, abs=1e-12)
    G = torch.linalg.eigvalsh(GaussNewtonOperator(obj).dense())[-1]
    terms = jacobian_terms(obj, objective(loss, seed=1), gauss_newton_top=float(G))
    assert terms["per_sample_gauss_newton_bound"] <= float(G) * (1 + 1e-10)
    if loss == "mse":
        assert 0 < terms["first_layer_jacobian_bound"] <= terms["per_sample_gauss_newton_bound"] * (1 + 1e-10)
    else:
        assert terms["first_layer_jacobian_bound"] is None
    # the share of the 30 held-out points whose Jacobian norm exceeds the training maximum: a fraction k/30,
    # positive exactly when the held-out maximum exceeds the training one, and equal to a recomputation
    frac = terms["test_fraction_above_train_max"]
    assert 0 <= frac <= 1 and frac * 30 == pytest.approx(round(frac * 30), abs=1e-9)
    assert (frac > 0) == (terms["test_jacobian_spec_max"] > terms["train_jacobian_spec_max"])
    assert (frac > 0) == (terms["test_over_train_spec_max"] > 1)
    train_spec, test_spec = jacobian_norms(obj).spectral, jacobian_norms(objective(loss, seed=1)).spectral
    assert frac == pytest.approx(float((test_spec > train_spec.max()).double().mean()), abs=1e-12)
    assert terms["covering_radius_max"] > 0
    assert terms["train_jacobian_spec_max"] <= terms["train_jacobian_fro_max"] + 1e-12


def test_first_linear_layer_detection():
    assert isinstance(first_linear_layer(build_model("mlp", (6,), 3)), nn.Linear)
    assert first_linear_layer(build_model("cnn", (40,), 10)) is None
