"""Cost of one SGLD step with structured noise against an SGD step that computes the same per-sample gradients.

Zhu et al.'s 11,330-parameter CNN on Fashion-MNIST (Wang et al.'s setting), batches of B = 64. Reference: an SGD
step that computes the batch's 64 per-sample gradients (vmap), averages them into ``.grad`` and updates. Measured:
the same plus building the noise covariance of each shape (``sqrt-gradcov``: the B x B Gram matrix, its
eigendecomposition, the d x k eigenvectors), drawing the noise and the update; without the bound accounting
(which costs one held-out gradient per step whatever the shape). Best of several repeats, interleaved.
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import record
from genlab.config import TrainConfig
from genlab.curvature.gradcov import stacked_per_sample_grads
from genlab.optim.sgld import SGLD
from genlab.train.run import load_data, make_model, make_objectives

B, STEPS, REPEATS = 64, 20, 5


def _setup():
    cfg = TrainConfig(dataset="fashion-mnist", n_train=10000, model="zhu-cnn", optimizer="sgd", lr=0.01,
                      batch_size=B, eval_batch_size=1000)
    data = load_data(cfg)
    model = make_model(cfg, data, torch.device("cpu"))
    objective, _ = make_objectives(cfg, data, model)
    return model, objective


def _timed_steps(model, objective, optimizer, shape: str | None) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randperm(objective.n, generator=gen)[:B] for _ in range(STEPS)]
    t0 = time.perf_counter()
    for idx in batches:
        G = stacked_per_sample_grads(objective, idx)
        g = G.mean(dim=0)
        offset = 0
        for p in params:
            p.grad = g[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        if shape is None:
            optimizer.step()
        else:
            optimizer.step(per_sample_grads=G)
    return (time.perf_counter() - t0) / STEPS


def main() -> dict:
    torch.manual_seed(0)
    model, objective = _setup()
    shapes = ("isotropic", "diagonal", "gradcov", "sqrt-gradcov")
    times: dict[str, list[float]] = {"sgd": [], **{s: [] for s in shapes}}
    for _ in range(REPEATS):
        times["sgd"].append(_timed_steps(model, objective, torch.optim.SGD(model.parameters(), lr=1e-3), None))
        for s in shapes:
            opt = SGLD(model.parameters(), lr=1e-3, noise=s, noise_trace=1e-6)
            times[s].append(_timed_steps(model, objective, opt, s))
    best = {k: min(v) for k, v in times.items()}
    ratios = {s: best[s] / best["sgd"] for s in shapes}
    figures = {"params": objective.num_params(), "batch": B, "step_time_s": best, "over_sgd_step": ratios}
    targets = {f"sqrt-gradcov SGLD step <= 2x an SGD step with the same per-sample gradients "
               f"(measured {ratios['sqrt-gradcov']:.2f}x)": ratios["sqrt-gradcov"] <= 2.0}
    return record("sgld_step", figures, targets)


if __name__ == "__main__":
    import json
    print(json.dumps(main(), indent=1))
