"""MacDonald, Valmadre, Lucey (2023), "On progressive sharpening, flat minima and generalisation": the
quantities that tie sharpness to the input-output Jacobian, computed for a trained model.

What the paper states (from its abstract and the public reviews; the full text was not available to us, so
the exact forms of its Ansatz 3.1 and Theorems 4.3 / 6.1 are not reproduced here): the large eigenvalues of
the loss Hessian come from its Gauss-Newton part, whose spectrum is set by the extreme singular values of the
networks' Jacobians over the training sample (Ansatz 3.1, qualitative: sharpness and the sample-maximum
input-output Jacobian norm ``max_i ||df(x_i)/dx||_2`` move together); the Lipschitz norm of the network on the
data support is bounded by that sample maximum plus the Jacobian's variation in small balls around the
training points, for data of low intrinsic dimension ``d``; and the generalisation gap by that Lipschitz
estimate times a covering radius of order ``(log N / N)^(1/d)``.

What we compute, each term reported separately (:func:`jacobian_terms`):

* the Gauss-Newton / residual split of the top Hessian eigenvalue (``genlab.curvature.analysis``);
* ``per_sample_gauss_newton_bound``: ``(1/N) max_i lambda_max(C_i^1/2 J_i J_i^T C_i^1/2)``, a *proven* lower
  bound on ``lambda_max(G)`` (``G`` is a sum of positive semi-definite per-sample terms), with ``J_i`` the
  parameter Jacobian of the outputs at ``x_i`` and ``C_i`` the loss Hessian in the outputs;
* ``first_layer_jacobian_bound``: for a network whose first layer is linear, ``z_1 = W_1 x + b``, and the MSE
  loss (``C = I``): ``(1/N) max_i ||x_i||^2 ||df(x_i)/dx||_2^2 / ||W_1||_2^2``, a proven lower bound on
  ``lambda_max(G)`` through the input-output Jacobian (the first-layer weight gradient is
  ``(df/dz_1) x^T`` and ``df/dx = (df/dz_1) W_1``; Ma & Ying 2021's link). This is the direction of the ansatz
  that can be proven; its ``1/N`` and weight-norm factors are the "mediating factors" the paper names;
* the sample-maximum Jacobian norm on the training set against the maximum over held-out points (how well the
  sample maximum estimates the Lipschitz norm over the distribution), and the nearest-training-point distances
  of held-out points (the covering radius the paper's rate is about). These are measurements, not a
  certified bound: without the theorem's constants we report no generalisation bound from them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from genlab.batching import take
from genlab.curvature.jacobian import JacobianNorms, jacobian_norms
from genlab.objective import Objective


def per_sample_gauss_newton_tops(objective: Objective, max_entries: int = 20_000_000) -> torch.Tensor:
    """``lambda_max(C_i^1/2 J_i J_i^T C_i^1/2)`` for every training point (``J_i``: parameter Jacobian of the outputs).

    ``C_i^1/2`` comes from the loss (``output_hessian_sqrt``, :mod:`genlab.losses`). Computed in chunks of at
    most ``max_entries`` Jacobian entries (``B x k x d``).
    """
    obj = objective
    d = obj.num_params()
    k = obj.num_outputs()
    step = max(1, min(obj.batch_size, max_entries // max(k * d, 1)))
    tops = []
    with torch.no_grad():
        for xb, yb in obj.chunks():
            for start in range(0, len(yb), step):
                xs, ys = take(xb, slice(start, start + step)), yb[start:start + step]
                with torch.enable_grad():
                    Jm = obj.output_jacobians(xs)                                     # (B, k, d)
                K = Jm @ Jm.transpose(1, 2)                                           # (B, k, k)
                with obj.eval_mode():
                    S = obj.loss_fn.output_hessian_sqrt(obj.forward(xs), ys)
                tops.append(torch.linalg.eigvalsh(S @ K @ S)[:, -1])
    return torch.cat(tops)


def first_linear_layer(model: nn.Module) -> nn.Linear | None:
    """The first layer if the network begins ``[Flatten,] Linear`` (genlab's ``mlp``), else ``None``."""
    seq = getattr(model, "body", model)
    if not isinstance(seq, nn.Sequential):
        return None
    for layer in seq:
        if isinstance(layer, nn.Flatten):
            continue
        return layer if isinstance(layer, nn.Linear) else None
    return None


def jacobian_terms(objective: Objective, test_objective: Objective | None = None,
                   gauss_newton_top: float | None = None, hessian_top: float | None = None,
                   train_norms: JacobianNorms | None = None) -> dict[str, Any]:
    """Every quantity of the module docstring for one trained model, each reported on its own.

    ``gauss_newton_top`` / ``hessian_top`` (from Lanczos) are echoed next to the lower bounds they face;
    ``train_norms``: the training points' Jacobian norms when already computed (e.g. over sharded ranks).
    """
    obj = objective
    n = obj.n
    train_norms = jacobian_norms(obj) if train_norms is None else train_norms
    out: dict[str, Any] = {"n": n, **{f"train_{k}": v for k, v in train_norms.summary().items()}}
    tops = per_sample_gauss_newton_tops(obj)
    out["per_sample_gauss_newton_max"] = float(tops.max())
    out["per_sample_gauss_newton_bound"] = float(tops.max()) / n
    layer = first_linear_layer(obj.model)
    if layer is not None and obj.loss_fn.identity_output_hessian:
        x_norm = obj.x.reshape(n, -1).norm(dim=1)
        w1 = float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2))
        terms = (x_norm ** 2) * train_norms.spectral ** 2
        out.update(first_layer_weight_norm=w1, input_norm_max=float(x_norm.max()),
                   first_layer_jacobian_bound=float(terms.max()) / (n * w1 ** 2))
    else:
        out["first_layer_jacobian_bound"] = None  # needs a linear first layer and C = I (MSE)
    if gauss_newton_top is not None:
        out["gauss_newton_top"] = gauss_newton_top
    if hessian_top is not None:
        out["hessian_top"] = hessian_top
    if test_objective is not None:
        test_norms = jacobian_norms(test_objective)
        spec_max = float(train_norms.spectral.max())
        out.update({f"test_{k}": v for k, v in test_norms.summary().items()})
        out["test_over_train_spec_max"] = float(test_norms.spectral.max()) / spec_max if spec_max > 0 else math.nan
        out["test_fraction_above_train_max"] = float((test_norms.spectral > spec_max).float().mean())
        xt, xs = obj.x.reshape(n, -1), test_objective.x.reshape(test_objective.n, -1).to(obj.x)
        nn_dist = torch.cat([torch.cdist(xs[i:i + 1000], xt).min(dim=1).values for i in range(0, len(xs), 1000)])
        out.update(covering_radius_max=float(nn_dist.max()), covering_radius_median=float(nn_dist.median()))
    return out
