"""One table of cases x every curvature operator, against dense float64 references (the curvlinops habit).

Cases: an MLP, a CNN, a LayerNorm residual net, a model taking a tuple of inputs, a model returning a dict;
each ready loss (and torch.nn / user-function losses where they apply); data as tensors and as a DataLoader.
References are built independently of the Objective: the flat-parameter loss differentiated twice by
``torch.autograd.functional.hessian`` (``torch.func.hessian`` is wrong on LayerNorm nets in torch 2.13),
Gauss--Newton as ``(1/n) sum_i J_i^T C_i J_i`` with ``J_i`` and ``C_i`` from ``torch.autograd.functional``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd.functional import hessian, jacobian
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

from genlab.curvature import EmpiricalFisherOperator, GaussNewtonOperator, HessianOperator
from genlab.errors import ConfigError
from genlab.losses import MSE, BCEWithLogits, CrossEntropy, Huber, MissingLossMethod, as_loss
from genlab.objective import Objective, params_to_vector, vector_to_params

N = 12


class ResidualLN(nn.Module):
    def __init__(self, d_in=4, width=5, k=3):
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.norm = nn.LayerNorm(width)
        self.block = nn.Linear(width, width)
        self.head = nn.Linear(width, k)

    def forward(self, x):
        h = self.inp(x)
        h = h + torch.tanh(self.block(self.norm(h)))
        return self.head(h)


class TwoInputs(nn.Module):
    """forward(x, mask): a tuple of inputs."""

    def __init__(self, d_in=4, k=3):
        super().__init__()
        self.a, self.b = nn.Linear(d_in, 4), nn.Linear(4, k)

    def forward(self, x, mask):
        return self.b(torch.tanh(self.a(x * mask)))


class DictOut(nn.Module):
    def __init__(self, d_in=4, k=3):
        super().__init__()
        self.a, self.b = nn.Linear(d_in, 4), nn.Linear(4, k)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        return {"logits": self.b(h), "features": h}


def _model(kind: str, k: int) -> tuple[nn.Module, object, str | None]:
    """(model, inputs, output key) in float64."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 4, generator=g, dtype=torch.float64)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, k)).double(), x, None
    if kind == "cnn":
        img = torch.randn(N, 1, 5, 5, generator=g, dtype=torch.float64)
        m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 9, k)).double()
        return m, img, None
    if kind == "layernorm-residual":
        return ResidualLN(k=k).double(), x, None
    if kind == "tuple-input":
        mask = (torch.rand(N, 4, generator=g) > 0.3).double()
        return TwoInputs(k=k).double(), (x, mask), None
    if kind == "dict-output":
        return DictOut(k=k).double(), x, "logits"
    raise ValueError(kind)


def _targets(loss_kind: str, k: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    if loss_kind.startswith("ce"):
        return torch.randint(0, k, (N,), generator=g)
    if loss_kind == "bce":
        return (torch.rand(N, k, generator=g) > 0.5).double()
    return torch.randn(N, k, generator=g, dtype=torch.float64)


LOSSES = {
    "ce": lambda: CrossEntropy(),
    "ce-smooth-weighted": lambda: CrossEntropy(label_smoothing=0.1, weight=[1.0, 2.0, 0.5]),
    "mse": lambda: MSE(),
    "mse-torch": lambda: nn.MSELoss(),
    "bce": lambda: BCEWithLogits(),
    "huber": lambda: Huber(delta=0.5),
}
MODELS = ["mlp", "cnn", "layernorm-residual", "tuple-input", "dict-output"]


def _call(model, state, inputs, key):
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    out = functional_call(model, state, args) if state is not None else model(*args)
    return out[key] if key is not None else out


def _reference_loss(loss_kind, out, y):
    """The per-example mean written out by hand, independently of genlab.losses."""
    if loss_kind == "ce":
        return nn.functional.cross_entropy(out, y)
    if loss_kind == "ce-smooth-weighted":
        w = torch.tensor([1.0, 2.0, 0.5], dtype=out.dtype)
        return nn.functional.cross_entropy(out, y, weight=w, label_smoothing=0.1, reduction="none").mean()
    if loss_kind == "mse":
        return 0.5 * (out - y).pow(2).sum(dim=1).mean()
    if loss_kind == "mse-torch":
        return (out - y).pow(2).mean()
    if loss_kind == "bce":
        return nn.functional.binary_cross_entropy_with_logits(out, y)
    if loss_kind == "huber":
        r = (out - y).abs()
        return torch.where(r <= 0.5, 0.5 * r ** 2, 0.5 * (r - 0.25)).sum(dim=1).mean()
    raise ValueError(loss_kind)


def _references(model, inputs, y, key, loss_kind):
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    flat0 = params_to_vector(params)

    def f(flat):
        return _reference_loss(loss_kind, _call(model, vector_to_params(flat, params), inputs, key), y)

    H = hessian(f, flat0)
    # Gauss-Newton: (1/n) sum_i J_i^T C_i J_i, per example, from autograd alone
    G = torch.zeros_like(H)
    F = torch.zeros_like(H)
    for i in range(N):
        xi = tuple(t[i:i + 1] for t in inputs) if isinstance(inputs, tuple) else inputs[i:i + 1]
        yi = y[i:i + 1]

        def out_i(flat, xi=xi):
            return _call(model, vector_to_params(flat, params), xi, key).reshape(-1)

        J = jacobian(out_i, flat0)                                                  # (k, d)
        o = out_i(flat0).detach()
        C = hessian(lambda z, yi=yi: _reference_loss(loss_kind, z.reshape(1, -1), yi), o)
        G += J.T @ C @ J / N
        gi = torch.autograd.functional.jacobian(
            lambda flat, xi=xi, yi=yi: _reference_loss(loss_kind, _call(model, vector_to_params(flat, params),
                                                                         xi, key), yi), flat0)
        F += torch.outer(gi, gi) / N
    return H, G, F


def _objective(model, inputs, y, key, loss_kind, as_loader):
    loss = LOSSES[loss_kind]()
    if as_loader:
        ds = TensorDataset(*(inputs if isinstance(inputs, tuple) else (inputs,)), y)
        batches = [((b[0], b[1]) if isinstance(inputs, tuple) else b[0], b[-1])
                   for b in DataLoader(ds, batch_size=5)]
        return Objective(model, loss, batches, output=key)
    return Objective(model, loss, (inputs, y), batch_size=5, output=key)


CASES = [(m, lk) for m in MODELS for lk in LOSSES]


@pytest.mark.parametrize("model_kind,loss_kind", CASES)
@pytest.mark.parametrize("as_loader", [False, True], ids=["tensors", "loader"])
def test_every_operator_matches_dense_reference(model_kind, loss_kind, as_loader):
    k = 3
    model, inputs, key = _model(model_kind, k)
    y = _targets(loss_kind, k)
    H_ref, G_ref, F_ref = _references(model, inputs, y, key, loss_kind)
    obj = _objective(model, inputs, y, key, loss_kind, as_loader)
    assert obj.n == N
    torch.testing.assert_close(obj.loss(), _reference_loss(loss_kind, _call(model, None, inputs, key), y).detach(),
                               atol=1e-12, rtol=1e-10)
    for cache in (True, False):
        H = HessianOperator(obj, cache_graph=cache).dense()
        torch.testing.assert_close(H, H_ref, atol=1e-10, rtol=1e-8)
    F = EmpiricalFisherOperator(obj).dense()
    torch.testing.assert_close(F, F_ref, atol=1e-10, rtol=1e-8)
    G = GaussNewtonOperator(obj).dense()
    torch.testing.assert_close(G, G_ref, atol=1e-10, rtol=1e-8)


def test_user_function_loss_values_and_hvps_but_no_gauss_newton():
    model, x, _ = _model("mlp", 1)
    y = torch.randn(N, 1, dtype=torch.float64)

    def my_loss(out, target):  # a batch mean, as most user losses are
        return (out - target).pow(4).mean()

    obj = Objective(model, my_loss, (x, y), batch_size=5)
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    H_ref = hessian(lambda flat: my_loss(_call(model, vector_to_params(flat, params), x, None), y),
                    params_to_vector(params))
    torch.testing.assert_close(HessianOperator(obj).dense(), H_ref, atol=1e-10, rtol=1e-8)
    with pytest.raises(MissingLossMethod, match="output_hessian_product"):
        GaussNewtonOperator(obj).matvec(torch.ones(obj.num_params(), dtype=torch.float64))


def test_torch_losses_become_ready_losses():
    assert isinstance(as_loss(nn.CrossEntropyLoss(label_smoothing=0.1)), CrossEntropy)
    assert isinstance(as_loss(nn.BCEWithLogitsLoss()), BCEWithLogits)
    assert isinstance(as_loss(nn.HuberLoss(delta=2.0)), Huber)
    loss = as_loss(nn.SmoothL1Loss())  # no ready counterpart: values and gradients only
    out, y = torch.randn(6, 2), torch.randn(6, 2)
    torch.testing.assert_close(loss.batch_sum(out, y) / 6, nn.SmoothL1Loss()(out, y))


def test_shuffling_loader_is_refused_for_full_batch_curvature():
    model, x, _ = _model("mlp", 3)
    y = _targets("ce", 3)
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    obj = Objective(model, "ce", loader)
    with pytest.raises(ConfigError, match="different batches on two passes"):
        HessianOperator(obj)
    fixed = Objective(model, "ce", DataLoader(TensorDataset(x, y), batch_size=4))
    HessianOperator(fixed)  # a fixed pass is accepted


def test_dict_output_without_key_and_bad_inputs_give_one_clear_error():
    model, x, _ = _model("dict-output", 3)
    y = _targets("ce", 3)
    with pytest.raises(ConfigError, match="pass output=KEY"):
        Objective(model, "ce", (x, y)).loss()
    with pytest.raises(ConfigError, match="has no 'probs'"):
        Objective(model, "ce", (x, y), output="probs").loss()
    with pytest.raises(ConfigError, match="inputs have 12 examples but the targets have 11"):
        Objective(model, "ce", (x, y[:11]))
    with pytest.raises(ConfigError, match="one-shot iterator"):
        Objective(model, "ce", iter([(x, y)]))
