"""Noise injection in the training step: against explicit computations, and exact resumption."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad

from genlab.objective import Objective
from genlab.train.noise_injection import _generator, after_step, noisy_gradient


def regression_objective(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    x = torch.randn(30, 4, dtype=torch.float64)
    y = torch.randn(30, 2, dtype=torch.float64)
    return Objective(model, x, y, "mse", batch_size=7)


def grads_of(model):
    return {k: p.grad.clone() for k, p in model.named_parameters()}


def test_label_noise_is_the_gradient_at_perturbed_targets():
    obj = regression_objective()
    noisy_gradient("label", 0.3, obj, None, seed=5, step=11)
    got = grads_of(obj.model)
    gen = _generator(5, 11, 1)
    # the same draws in chunk order (chunks of 7)
    y_noisy = torch.cat([yb + 0.3 * torch.randn(yb.shape, generator=gen, dtype=yb.dtype) for _, yb in obj.chunks()])
    params = {k: p.detach() for k, p in obj.model.named_parameters()}
    expected = grad(lambda p: 0.5 * ((functional_call(obj.model, p, (obj.x,)) - y_noisy) ** 2).sum(1).mean())(params)
    for k in got:
        torch.testing.assert_close(got[k], expected[k])


def test_label_flips_for_classes_are_reproducible_and_change_the_gradient():
    torch.manual_seed(0)
    model = nn.Linear(5, 3).double()
    obj = Objective(model, torch.randn(200, 5, dtype=torch.float64), torch.randint(0, 3, (200,)), "ce")
    runs = []
    for step in (3, 3, 4):
        model.zero_grad()
        noisy_gradient("label", 0.5, obj, None, seed=0, step=step)
        runs.append(model.weight.grad.clone())
    model.zero_grad()
    obj.accumulate_grad()
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert not torch.allclose(runs[0], model.weight.grad)


def test_dropconnect_gradient_is_mask_times_gradient_at_masked_weights():
    obj = regression_objective(1)
    before = {k: p.detach().clone() for k, p in obj.model.named_parameters()}
    noisy_gradient("dropconnect", 0.25, obj, None, seed=2, step=7)
    got = grads_of(obj.model)
    for k, p in obj.model.named_parameters():
        assert torch.equal(p.detach(), before[k])  # weights restored exactly
    gen = _generator(2, 7, 1)
    masks = {k: (torch.rand(p.shape, generator=gen) >= 0.25).to(p) / 0.75 for k, p in before.items()}
    expected = grad(lambda p: 0.5 * ((functional_call(obj.model, {k: p[k] * masks[k] for k in p}, (obj.x,))
                                      - obj.y) ** 2).sum(1).mean())(before)
    for k in got:
        torch.testing.assert_close(got[k], expected[k])


def test_anti_pgd_perturbations_telescope():
    model = nn.Linear(50, 40).double()
    w0 = {k: p.detach().clone() for k, p in model.named_parameters()}
    for step in range(25):
        after_step("anti-pgd", 0.1, model, seed=4, step=step)
    # the sum of xi_{t+1} - xi_t is xi_25 - xi_0: spread 0.1 * sqrt(2) per coordinate after any number of steps
    g25, g0 = _generator(4, 25, 2), _generator(4, 0, 2)
    for k, p in model.named_parameters():
        xi25 = torch.randn(p.shape, generator=g25, dtype=p.dtype)
        xi0 = torch.randn(p.shape, generator=g0, dtype=p.dtype)
        torch.testing.assert_close(p.detach() - w0[k], 0.1 * (xi25 - xi0))
    disp = torch.cat([(p.detach() - w0[k]).reshape(-1) for k, p in model.named_parameters()])
    assert float(disp.std()) == pytest.approx(0.1 * 2 ** 0.5, rel=0.1)


@pytest.mark.parametrize("noise", ["label", "dropconnect", "anti-pgd"])
def test_noisy_runs_resume_to_the_same_parameters(tmp_path, noise):
    from test_train import Crash, assert_same_params

    from genlab.config import TrainConfig
    from genlab.train import train

    cfg = TrainConfig(dataset="mnist1d", n_train=200, model="mlp", width=16, optimizer="sgd", lr=0.05, batch_size=32,
                      seed=2, steps=12, checkpoint_every=4, eval_every=4, noise=noise, noise_sigma=0.2)
    train(cfg, tmp_path / "straight", quiet=True)
    with pytest.raises(Crash.Boom):
        train(cfg, tmp_path / "crashed", callbacks=[Crash(at=10)], quiet=True)
    train(cfg, tmp_path / "crashed", quiet=True)
    assert_same_params(tmp_path / "straight", tmp_path / "crashed")
    plain = train(cfg.with_changes(noise="none", noise_sigma=0.0), tmp_path / "plain", quiet=True)
    assert plain.summary["train_loss"] != train(cfg, tmp_path / "straight", quiet=True).summary["train_loss"]


def test_bad_noise_settings_are_refused():
    from pydantic import ValidationError

    from genlab.config import TrainConfig

    with pytest.raises(ValidationError, match="drop rate"):
        TrainConfig(noise="dropconnect", noise_sigma=1.0)
    with pytest.raises(ValidationError):
        TrainConfig(noise="gaussian")


def test_label_flip_probability_above_one_is_refused_for_classes(tmp_path):
    from genlab.config import TrainConfig
    from genlab.errors import ConfigError
    from genlab.train import train

    cfg = TrainConfig(dataset="mnist1d", n_train=100, model="mlp", width=8, steps=1, noise="label", noise_sigma=1.5)
    with pytest.raises(ConfigError, match="flip probability"):
        train(cfg, tmp_path / "r", quiet=True)
