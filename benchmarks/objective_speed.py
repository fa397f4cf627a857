"""Cost of the Objective's curvature primitives, as ratios to a full-batch gradient measured in the same run.

Setting: Cohen et al.'s network (MLP 200-200 tanh, MSE) and the MNIST-1D CNN on the 4,000 MNIST-1D training
points, float32, CPU.

* ``hvp / grad``: one full-batch Hessian-vector product (double backward) over one full-batch gradient. The
  classic cost model says about 2-4x; target: <= 4.
* ``hvp forward-over-reverse / double backward``: the torch.func ``jvp(grad)`` alternative, to justify the
  choice of double backward (target: double backward is not slower, ratio >= 0.9).
* ``per-sample grads: loop / vmap``: speed-up of the vmap per-sample gradients over a Python loop on 256
  examples (target: >= 5x).
"""

from __future__ import annotations

import torch
from torch.func import functional_call, grad, jvp

from benchmarks.common import best_time, record
from genlab.data import load_dataset
from genlab.models import build_model
from genlab.objective import Objective, loss_from_outputs


def forward_over_reverse_hvp(obj: Objective, v):
    params = {k: p.detach() for k, p in obj.params().items()}
    out = {k: torch.zeros_like(p) for k, p in params.items()}
    with obj.eval_mode():
        for xb, yb in obj.chunks():
            def f(p):
                return loss_from_outputs(functional_call(obj.model, (p,), (xb,)), yb, obj.loss_name, "sum")

            _, hv = jvp(grad(f), (params,), (v,))
            for k in out:
                out[k] += hv[k]
    return {k: h / obj.n for k, h in out.items()}


def bench_model(name: str, model_name: str, loss: str, **kw) -> dict:
    data = load_dataset("mnist1d", loss=loss)
    torch.manual_seed(0)
    model = build_model(model_name, data.input_shape, data.output_dim, **kw)
    obj = Objective(model, data.x_train, data.y_train, loss=loss, batch_size=1000)
    v = {k: torch.randn_like(p) for k, p in obj.params().items()}
    t_grad = best_time(lambda: obj.grad())
    t_hvp = best_time(lambda: obj.hvp(v))
    t_for = best_time(lambda: forward_over_reverse_hvp(obj, v))
    hv1, hv2 = obj.hvp(v), forward_over_reverse_hvp(obj, v)
    agree = max(float((hv1[k] - hv2[k]).abs().max() / (hv1[k].abs().max() + 1e-12)) for k in hv1)
    xs, ys = data.x_train[:256], data.y_train[:256]
    t_vmap = best_time(lambda: obj.per_sample_grads(xs, ys), repeats=3)

    small = Objective(model, xs, ys, loss=loss)
    t_loop = best_time(lambda: [small.grad(indices=torch.tensor([i])) for i in range(len(xs))], repeats=1)
    return {"model": name, "params": obj.num_params(), "grad_s": t_grad, "hvp_s": t_hvp,
            "hvp_over_grad": t_hvp / t_grad, "forward_over_reverse_over_double_backward": t_for / t_hvp,
            "hvp_variants_rel_diff": agree, "per_sample_vmap_s": t_vmap, "per_sample_loop_s": t_loop,
            "per_sample_loop_over_vmap": t_loop / t_vmap}


def main() -> dict:
    rows = [bench_model("mlp 200-200 tanh (mse)", "mlp", "mse", width=200, depth=2, activation="tanh"),
            bench_model("mnist1d cnn (ce)", "cnn", "ce")]
    targets = {
        "hvp_over_grad <= 4": all(r["hvp_over_grad"] <= 4 for r in rows),
        "double backward not slower (forward_over_reverse_over_double_backward >= 0.9)":
            all(r["forward_over_reverse_over_double_backward"] >= 0.9 for r in rows),
        "per-sample vmap >= 5x loop": all(r["per_sample_loop_over_vmap"] >= 5 for r in rows),
    }
    for r in rows:
        print(f"{r['model']:<24} params {r['params']:>7,}  hvp/grad {r['hvp_over_grad']:.2f}  "
              f"fwd-over-rev/double-bwd {r['forward_over_reverse_over_double_backward']:.2f}  "
              f"per-sample loop/vmap {r['per_sample_loop_over_vmap']:.1f}x")
    return record("objective_speed", {"rows": rows}, targets)


if __name__ == "__main__":
    main()
