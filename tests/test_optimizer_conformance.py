"""One list of every optimizer genlab trains with, through the same tests (the optax habit).

Each entry builds the optimizer for a model (and any plugin it needs). Every one must: descend on a small
least-squares problem, be reproducible from its seed, resume bit-exactly after a crash, keep float64,
take label noise (it must change the trajectory), and take parameter groups: two groups with the same
settings give exactly the one-group trajectory, and a group setting that differs is honoured or refused
in one clear line.
"""

from __future__ import annotations

import pytest
from helpers import Crash
import torch
from safetensors.torch import load_file
from torch import nn

from genlab.objective import Objective
from genlab.optim import IVON, SGLD, VariationalGD
from genlab.optim.sgld import SGLDAccounting
from genlab.train import Callback, NoiseInjection, fit

N, D = 64, 5


def problem(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g, dtype=dtype)
    w = torch.randn(D, 2, generator=g, dtype=dtype)
    y = x @ w + 0.05 * torch.randn(N, 2, generator=g, dtype=dtype)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 2)).to(dtype)
    return model, x, y


def groups(model, split: bool, **second):
    """All parameters in one group, or the two layers as two groups (the second with extra settings)."""
    if not split:
        return model.parameters()
    first, last = list(model[0].parameters()), list(model[2].parameters())
    return [{"params": first}, {"params": last, **second}]


def _sgld(noise):
    def build(model, params, held):
        opt = SGLD(params, lr=0.05, noise=noise, noise_trace=1e-4, seed=3)
        return opt, [SGLDAccounting(held, "held-out points", batch_size=16)]
    return build


OPTIMIZERS = {
    "sgd": lambda model, params, held: (torch.optim.SGD(params, lr=0.1, momentum=0.5), []),
    "adam": lambda model, params, held: (torch.optim.Adam(params, lr=0.02), []),
    "sgld-isotropic": _sgld("isotropic"),
    "sgld-diagonal": _sgld("diagonal"),
    "sgld-gradcov": _sgld("gradcov"),
    "sgld-sqrt-gradcov": _sgld("sqrt-gradcov"),
    "ivon": lambda model, params, held: (IVON(params, lr=0.05, ess=N, hess_init=1.0, mc_samples=2, seed=3), []),
    "vgd": lambda model, params, held: (VariationalGD(params, lr=0.1, sigma=0.01, mc_samples=2, seed=3), []),
}
# the per-group setting each optimizer honours (None: it has none that may differ, and must refuse a change)
GROUP_SETTING = {"sgd": {"lr": 0.05}, "adam": {"lr": 0.01}, "ivon": {"weight_decay": 0.0}, "vgd": {"lr": 0.05},
                 "sgld-isotropic": None, "sgld-diagonal": None, "sgld-gradcov": None, "sgld-sqrt-gradcov": None}




def train(name, out, *, steps=20, dtype=torch.float32, split=False, second=None, noise=None, extra=()):
    model, x, y = problem(dtype)
    g = torch.Generator().manual_seed(5)
    held = Objective(model, "mse", (torch.randn(32, D, generator=g, dtype=dtype),
                                    torch.randn(32, 2, generator=g, dtype=dtype)))
    opt, plugins = OPTIMIZERS[name](model, groups(model, split, **(second or {})), held)
    obj = Objective(model, "mse", (x, y))
    plugins = [*plugins, *([noise] if noise else []), *extra]
    result = fit(obj, opt, out, steps=steps, batch_size=16, seed=2, checkpoint_every=5, quiet=True, plugins=plugins)
    return result, load_file(str(result.path / "model.safetensors"))


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(params=list(OPTIMIZERS))
def name(request):
    return request.param


def test_descends(name, tmp_path):
    model, x, y = problem()
    start = float(Objective(model, "mse", (x, y)).loss())
    result, _ = train(name, tmp_path / "r", steps=60)
    assert result.summary["train_loss"] < 0.7 * start


def test_reproducible_from_its_seed(name, tmp_path):
    assert same(train(name, tmp_path / "a")[1], train(name, tmp_path / "b")[1])


def test_resumes_bit_exactly_after_a_crash(name, tmp_path):
    _, full = train(name, tmp_path / "full")
    with pytest.raises(Crash.Boom):
        train(name, tmp_path / "cut", extra=[Crash(12)])
    _, resumed = train(name, tmp_path / "cut")
    assert same(full, resumed)


def test_keeps_float64(name, tmp_path):
    result, params = train(name, tmp_path / "r", dtype=torch.float64, steps=5)
    assert all(p.dtype == torch.float64 for p in params.values())
    for state in result.objective.model.parameters():
        assert state.dtype == torch.float64


def test_label_noise_changes_the_trajectory(name, tmp_path):
    _, plain = train(name, tmp_path / "plain", steps=5)
    _, noisy = train(name, tmp_path / "noisy", steps=5, noise=NoiseInjection("label", 0.5))
    assert not same(plain, noisy)


def test_parameter_groups(name, tmp_path):
    _, one = train(name, tmp_path / "one", steps=8)
    _, two = train(name, tmp_path / "two", steps=8, split=True)
    assert same(one, two)  # the same settings in two groups: exactly the one-group trajectory
    setting = GROUP_SETTING[name]
    if setting is None:
        with pytest.raises(ValueError, match="must be the same in every parameter group"):
            train(name, tmp_path / "bad", steps=2, split=True, second={"lr": 0.01})
    else:
        _, other = train(name, tmp_path / "other", steps=8, split=True, second=setting)
        assert not same(one, other)
        first = [k for k in one if k.startswith("0.")]
        # the first group's own update only changes through the second group's effect on the loss
        assert first and any(not torch.equal(one[k], other[k]) for k in one if k.startswith("2."))
