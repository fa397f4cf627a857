"""Cost of an IVON step against an SGD step on the same model and batch, and of a posterior-predictive pass.

Model: ResNet-20-style ``resnet`` is too slow on 2 cores for repeated timing, so the issue's comparison is taken
on the MNIST-1D CNN (``cnn``) and on LeNet-5 on Fashion-MNIST, batch 128. Reference: a ``torch.optim.SGD``
step (momentum 0.9) with its gradient. Measured: IVON with S = 1, 2, 4 samples per step (each sample one
forward/backward, so S > 1 costs about S gradients by construction). Predictive: ``posterior_predictive``
over K = 8 samples against K plain forward passes, on an evaluation batch of 1,000 points (what a predictive
evaluation runs on; on a 128-point batch of the MNIST-1D CNN a forward pass is so cheap that drawing the
weights' noise is a third of it). Best of several interleaved repeats.
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import record
from genlab.config import TrainConfig
from genlab.optim.ivon import IVON, posterior_predictive
from genlab.train.run import load_data, make_model, make_objectives

B, STEPS, REPEATS, K = 128, 20, 5, 8


def _setup(dataset: str, model: str):
    cfg = TrainConfig(dataset=dataset, n_train=4000, model=model, batch_size=B)
    data = load_data(cfg)
    net = make_model(cfg, data, torch.device("cpu"))
    objective, _ = make_objectives(cfg, data, net)
    return net, objective


def _time_steps(objective, optimizer) -> float:
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randperm(objective.n, generator=gen)[:B] for _ in range(STEPS)]
    t0 = time.perf_counter()
    for idx in batches:
        def closure():
            optimizer.zero_grad(set_to_none=True)
            return objective.accumulate_grad(idx)
        if getattr(optimizer, "needs_closure", False):
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()
    return (time.perf_counter() - t0) / STEPS


def _measure(dataset: str, model: str) -> dict:
    torch.manual_seed(0)
    net, objective = _setup(dataset, model)
    times: dict[str, list[float]] = {"sgd": [], "ivon_S1": [], "ivon_S2": [], "ivon_S4": []}
    for _ in range(REPEATS):
        times["sgd"].append(_time_steps(objective, torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)))
        for S in (1, 2, 4):
            opt = IVON(net.parameters(), lr=1e-3, ess=objective.n, mc_samples=S)
            times[f"ivon_S{S}"].append(_time_steps(objective, opt))
    best = {k: min(v) for k, v in times.items()}
    opt = IVON(net.parameters(), lr=1e-3, ess=objective.n)
    x = objective.x[:1000]
    net.eval()
    fwd, pred = [], []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(K):
                net(x)
        fwd.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        posterior_predictive(opt, net, x, samples=K)
        pred.append(time.perf_counter() - t0)
    return {"params": objective.num_params(), "step_time_s": best,
            "ivon_over_sgd": {k: best[k] / best["sgd"] for k in best if k != "sgd"},
            "predictive_over_k_forwards": min(pred) / min(fwd)}


def main() -> dict:
    figures = {"cnn-mnist1d": _measure("mnist1d", "cnn"), "lenet5-fashion-mnist": _measure("fashion-mnist", "lenet5")}
    targets = {}
    for name, f in figures.items():
        r = f["ivon_over_sgd"]["ivon_S1"]
        targets[f"{name}: IVON step (S=1) <= 1.2x an SGD step (measured {r:.2f}x; S=2 "
                f"{f['ivon_over_sgd']['ivon_S2']:.2f}x, S=4 {f['ivon_over_sgd']['ivon_S4']:.2f}x)"] = r <= 1.2
        p = f["predictive_over_k_forwards"]
        targets[f"{name}: posterior predictive over K={K} samples <= 1.3x K forward passes (measured {p:.2f}x)"] = (
            p <= 1.3)
    return record("ivon_step", figures, targets)
