"""The Objective against independent references: dense Hessians, loops, autograd."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from genlab.errors import ConfigError
from genlab.objective import Objective, params_to_vector, vector_to_params


def tiny_problem(loss: str, n: int = 13, seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(n, 4, dtype=torch.float64)
    if loss == "ce":
        y = torch.randint(0, 3, (n,))
    else:
        y = torch.randn(n, 3, dtype=torch.float64)
    return model, x, y


def dense_hessian(model, x, y, loss):
    """Hessian of the mean loss w.r.t. the flat parameter vector, by torch.func.hessian."""
    params = {k: p.detach() for k, p in model.named_parameters()}
    flat0 = params_to_vector(params)

    def f(flat):
        out = functional_call(model, vector_to_params(flat, params), (x,))
        if loss == "ce":
            return nn.functional.cross_entropy(out, y)
        return 0.5 * (out - y).pow(2).sum(dim=1).mean()

    return hessian(f)(flat0)


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("batch_size", [4, 100])
def test_hvp_matches_dense_hessian(loss, batch_size):
    model, x, y = tiny_problem(loss)
    obj = Objective(model, x, y, loss=loss, batch_size=batch_size)
    H = dense_hessian(model, x, y, loss)
    params = obj.params()
    for seed in range(3):
        v = torch.randn(H.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        hv = params_to_vector(obj.hvp(vector_to_params(v, params)))
        torch.testing.assert_close(hv, H @ v, atol=1e-5, rtol=0)
        # far tighter than the required 1e-5 in float64
        assert (hv - H @ v).abs().max() < 1e-10


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_per_sample_grads_match_loop(loss):
    model, x, y = tiny_problem(loss, n=7)
    obj = Objective(model, x, y, loss=loss, batch_size=3)
    ps = obj.per_sample_grads()
    for i in range(len(x)):
        model.zero_grad()
        out = model(x[i:i + 1])
        li = nn.functional.cross_entropy(out, y[i:i + 1]) if loss == "ce" else 0.5 * (out - y[i:i + 1]).pow(2).sum()
        li.backward()
        for k, p in model.named_parameters():
            torch.testing.assert_close(ps[k][i], p.grad, atol=1e-12, rtol=0)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_loss_grad_and_chunking(loss):
    model, x, y = tiny_problem(loss, n=23)
    big = Objective(model, x, y, loss=loss, batch_size=1000)
    small = Objective(model, x, y, loss=loss, batch_size=5)
    torch.testing.assert_close(big.loss(), small.loss())
    # the gradient is the mean of the per-sample gradients
    ps = big.per_sample_grads()
    l_small, g_small = small.loss_and_grad()
    for k in ps:
        torch.testing.assert_close(g_small[k], ps[k].mean(0), atol=1e-12, rtol=0)
    # accumulate_grad (training path) writes the same gradient into .grad
    model.zero_grad()
    loss_value = small.accumulate_grad()
    assert loss_value == pytest.approx(float(l_small), abs=1e-12)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, g_small[k], atol=1e-12, rtol=0)


def test_subset_indices():
    model, x, y = tiny_problem("ce", n=20)
    obj = Objective(model, x, y, loss="ce", batch_size=3)
    idx = torch.tensor([3, 7, 11, 2])
    sub = Objective(model, x[idx], y[idx], loss="ce")
    torch.testing.assert_close(obj.loss(indices=idx), sub.loss())
    g1, g2 = obj.grad(indices=idx), sub.grad()
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k])


def test_params_argument_is_used():
    model, x, y = tiny_problem("mse")
    obj = Objective(model, x, y, loss="mse")
    zero = {k: torch.zeros_like(p) for k, p in obj.params().items()}
    # with all-zero parameters the output is 0, so the loss is 0.5 * mean ||y||^2
    assert float(obj.loss(zero)) == pytest.approx(float(0.5 * y.pow(2).sum(1).mean()), rel=1e-12)
    # and the model's own parameters are untouched
    assert all(p.abs().sum() > 0 for p in model.parameters())


def test_input_jacobian_matches_autograd():
    model, x, y = tiny_problem("ce", n=5)
    obj = Objective(model, x, y, loss="ce", batch_size=2)
    J = obj.input_jacobian()
    assert J.shape == (5, 3, 4)
    for i in range(5):
        ref = torch.autograd.functional.jacobian(lambda xi: model(xi.unsqueeze(0)).squeeze(0), x[i])
        torch.testing.assert_close(J[i], ref, atol=1e-12, rtol=0)


def test_evaluate_accuracy_and_eval_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    x = torch.randn(50, 4)
    y = model.eval()(x).argmax(1)  # labels the model gets right in eval mode
    model.train()
    obj = Objective(model, x, y, loss="ce")
    assert obj.evaluate()["accuracy"] == 1.0
    assert model.training  # mode restored
    onehot = nn.functional.one_hot(y, 3).float()
    assert Objective(model, x, onehot, loss="mse").evaluate()["accuracy"] == 1.0


def test_accuracy_only_for_classes():
    model, x, y = tiny_problem("mse")  # 3 real-valued outputs: regression
    assert not Objective(model, x, y, loss="mse").classification
    assert math.isnan(Objective(model, x, y, loss="mse").evaluate()["accuracy"])
    onehot = nn.functional.one_hot(torch.arange(len(x)) % 3, 3).double()
    assert Objective(model, x, onehot, loss="mse").classification
    assert Objective(model, x, y, loss="mse", classification=True).classification


def test_bad_input():
    model, x, y = tiny_problem("ce")
    with pytest.raises(ConfigError, match="allowed: ce, mse"):
        Objective(model, x, y, loss="hinge")
    with pytest.raises(ConfigError, match="examples"):
        Objective(model, x, y[:-1], loss="ce")
