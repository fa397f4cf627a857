"""``genlab curvature RUN_DIR``: the curvature of a trained run, written to ``curvature.json`` and figures.

The Hessian is of the run's training objective: the mean loss over all its
training points (eval mode), at the run's final parameters. ``curvature.json``
keys tools can rely on:

* ``top_eigenvalues``: the top-k Hessian eigenvalues, descending;
* ``trace``: Hutch++ estimate of the Hessian trace (``null`` unless asked for),
  with ``trace_std_error``;
* ``hvp_count``: Hessian-vector products spent on everything in the file;
* ``loss``: the objective the Hessian is of (mean training loss);
* ``processes``: the ranks the training points were sharded over (``--nproc``), and
  ``points_per_process``: how many each held (each rank keeps its contiguous shard alone);
* ``peak_rss_bytes`` / ``peak_cuda_bytes``: the (rank-0) process's peak resident memory and peak CUDA
  allocation (``null`` on CPU);
* ``memory``: how the computation spent memory (:mod:`genlab.curvature.memory`): ``max_memory`` (the
  budget, ``null`` without one), ``vector_bytes``, ``graph_bytes_per_chunk`` (measured under a budget),
  ``chunks``, ``cache_graph``, ``basis_columns`` (the Lanczos basis cap) and ``basis_columns_used``.

Optional sections: ``density`` (SLQ), ``jacobian`` (input-output Jacobian norms
on the training and test sets and MacDonald et al.'s quantities, see
:mod:`genlab.bounds.jacobian`), ``gauss_newton`` (top Gauss-Newton
eigenvalues and the Gauss-Newton / residual split of the top Hessian eigenvalue).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.curvature.density import slq
from genlab.curvature.lanczos import lanczos
from genlab.curvature.operators import GaussNewtonOperator, HessianOperator
from genlab.curvature.trace import hutchpp
from genlab.errors import ConfigError
from genlab.jsonio import write_json_atomic
from genlab.objective import Objective


def gauss_newton_split(H: HessianOperator, G: GaussNewtonOperator, u: torch.Tensor) -> dict[str, float]:
    """Split the Rayleigh quotient of ``H`` along a unit vector ``u`` into Gauss-Newton and residual parts.

    ``u^T H u = u^T G u + u^T R u`` with ``R = H - G`` the residual (functional
    Hessian) term. For the top eigenvector ``u^T H u`` is the sharpness, and
    ``u^T G u / u^T H u`` is the fraction of it the Gauss-Newton part explains.
    """
    u = u / u.norm()
    h = float(torch.dot(u, H.matvec(u)))
    g = float(torch.dot(u, G.matvec(u)))
    return {"rayleigh_hessian": h, "rayleigh_gauss_newton": g, "rayleigh_residual": h - g,
            "gauss_newton_fraction": g / h if h != 0 else math.nan}


def curvature(run_dir: str | Path, *, top_k: int = 5, tol: float = 1e-6, trace: bool = False,
              trace_matvecs: int = 150, density: bool = False, density_probes: int = 8, density_steps: int = 80,
              jacobian: bool = False, gauss_newton: bool = False, dtype: str = "float64", seed: int = 0,
              figures: bool = True, device: str | None = None, nproc: int = 1, max_memory: int | str | None = None,
              batch_size: int | None = None) -> dict[str, Any]:
    """Analyse the curvature of a trained run; writes ``RUN_DIR/curvature.json`` (and figures); returns it.

    Args:
        run_dir: a run directory written by ``genlab train``.
        top_k: top Hessian eigenvalues (Lanczos, relative residual ``tol``).
        trace: also estimate the trace (Hutch++, ``trace_matvecs`` products).
        density: also the spectral density (SLQ, ``density_probes`` x ``density_steps`` products).
        jacobian: also input-output Jacobian norms and MacDonald et al.'s bound terms.
        gauss_newton: also top Gauss-Newton eigenvalues and the Gauss-Newton / residual split.
        dtype: compute in ``float64`` (default, accurate) or ``float32`` (the run's own precision).
        seed: seed of the random probes and start vectors.
        figures: write ``figures/eigenvalues.png`` (and ``figures/spectral_density.png``).
        device: where to compute (default: the run's device).
        nproc: processes to shard the training points over (:mod:`genlab.curvature.distributed`; gloo, or
            NCCL with one GPU per rank when ``device`` is ``cuda``). Inside an initialised process group (your
            own ``torchrun`` job) the group's ranks are used whatever ``nproc`` says; rank 0 writes the files.
            The training points' Jacobian norms are computed shard by shard; the rest of ``jacobian`` (test
            norms, per-sample Gauss-Newton tops, covering radii) by rank 0.
        max_memory: a budget in bytes (or ``"2GB"``) for what the computation holds beyond the data and model,
            per process: one batch's graph, cached graphs only if they fit, the Lanczos basis capped (thick
            restarts) to the rest (:mod:`genlab.curvature.memory`). ``None``: nothing capped.
        batch_size: examples per chunk of every product (default: the run's); one chunk's graph is what a
            streamed product holds.
    """
    from genlab.curvature.memory import parse_size, plan_memory

    from genlab.curvature.distributed import (ShardedOperator, shard_indices, shard_objective,
                                              sharded_jacobian_norms, sharded_mean, spawn, world)
    from genlab.train.run import load_run, resolve_device

    if dtype not in ("float32", "float64"):
        raise ConfigError(f"--dtype: unknown dtype {dtype!r}; allowed: float32, float64")
    if top_k < 1:
        raise ConfigError(f"--top-k: must be >= 1 (got {top_k})")
    if not (isinstance(tol, (int, float)) and 1e-14 <= tol < 1):  # nan fails both comparisons
        raise ConfigError(f"--tol: the relative residual tolerance must lie in [1e-14, 1) (got {tol})")
    for name, value, least in (("--trace-matvecs", trace_matvecs, 3), ("--density-probes", density_probes, 1),
                               ("--density-steps", density_steps, 2)):
        if not 1 <= least <= value <= 10 ** 5:
            raise ConfigError(f"{name}: must lie in [{least}, 100000] (got {value})")
    if not isinstance(nproc, int) or not 1 <= nproc <= 256:
        raise ConfigError(f"--nproc: must be an integer in [1, 256] (got {nproc})")
    budget = parse_size(max_memory) if max_memory is not None else None
    if batch_size is not None and not (isinstance(batch_size, int) and 1 <= batch_size <= 10 ** 7):
        raise ConfigError(f"--batch-size: must be an integer in [1, 10000000] (got {batch_size})")
    rank, size = world()
    if nproc > 1 and size == 1:  # start the ranks ourselves; rank 0 writes curvature.json
        import json

        backend = "nccl" if device is not None and device.startswith("cuda") else "gloo"
        spawn(_curvature_rank, nproc, str(run_dir), backend=backend, top_k=top_k, tol=tol, trace=trace,
              trace_matvecs=trace_matvecs, density=density, density_probes=density_probes,
              density_steps=density_steps, jacobian=jacobian, gauss_newton=gauss_newton, dtype=dtype, seed=seed,
              figures=figures, device=device, max_memory=budget, batch_size=batch_size)
        return json.loads((Path(run_dir) / "curvature.json").read_text())
    t0 = time.perf_counter()
    sharded = size > 1
    # sharded: load on the CPU, keep this rank's shard alone and move only that to the device
    run = load_run(run_dir, device="cpu" if sharded else device)
    run_path, config, record = Path(run.path), run.config, run.record
    model = run.model.to(getattr(torch, dtype))
    if sharded:
        model = model.to(resolve_device(device or (config.run.device if config is not None else "auto")))
    base, test = run.objective, run.test_objective
    n = base.n
    full = test_obj = None  # rank 0's full training set and test set, for --jacobian's global terms
    if jacobian and rank == 0:
        full = base.subset(None, model=model)
        test_obj = test.subset(None, model=model) if test is not None else None
    obj = shard_objective(base, rank, size, model=model) if sharded else base.with_model(model)
    del run, base, test  # a rank that no longer refers to the full data lets it go
    if batch_size is not None:
        obj.batch_size = batch_size
        if full is not None:
            full.batch_size = batch_size
    gen = torch.Generator().manual_seed(seed)
    plan = plan_memory(obj, budget, top_k=top_k, trace_matvecs=trace_matvecs if trace else None,
                       density_steps=density_steps if density else None)
    H = HessianOperator(obj, cache_graph=plan.cache_graph)
    if sharded:
        H = ShardedOperator(H)
    top = lanczos(H, min(top_k, H.dim), tol=tol, max_iter=max(300, 10 * top_k), generator=gen,
                  max_basis=plan.basis_columns)
    if H.loss is not None:
        loss = H.loss
    else:  # not cached: the mean loss of the (global) training set
        loss = sharded_mean(float(obj.loss()), obj.n) if sharded else float(obj.loss())
    result: dict[str, Any] = {
        "run": str(run_path), "loss": loss, "n": n, "num_params": H.dim, "dtype": dtype, "seed": seed,
        "processes": size, "points_per_process": [len(shard_indices(n, r, size)) for r in range(size)],
        "top_eigenvalues": [float(x) for x in top.eigenvalues],
        "eigen_residuals": top.residuals, "eigen_converged": top.converged, "eigen_tol": tol,
        "grad_norm": float(H.gradient.norm()) if H.gradient is not None else None,
        "stability_threshold": _threshold(config) if config is not None else _fit_threshold(record),
        "trace": None, "trace_std_error": None,
    }
    if trace:
        est = hutchpp(H, trace_matvecs, generator=gen)
        result.update(trace=est.value, trace_std_error=est.std_error, trace_method=est.method)
    dens = None
    if density:
        dens = slq(H, density_probes, density_steps, generator=gen)
        grid = dens.grid()
        sigma = max(1e-3 * (grid[-1] - grid[0]), 1e-12) * 5
        result["density"] = {"grid": grid.tolist(), "values": dens.smoothed(grid, sigma).tolist(), "sigma": sigma,
                             "probes": density_probes, "steps": density_steps, **dens.as_dict()}
    if gauss_newton:
        G = GaussNewtonOperator(obj)
        if sharded:
            G = ShardedOperator(G)
        gn = lanczos(G, min(top_k, G.dim), tol=tol, max_iter=max(300, 10 * top_k), generator=gen,
                     max_basis=plan.basis_columns)
        split = gauss_newton_split(H, G, top.eigenvectors[:, 0])
        result["gauss_newton"] = {"top_eigenvalues": [float(x) for x in gn.eigenvalues],
                                  "residuals": gn.residuals, "matvecs": gn.matvecs,
                                  "top_ratio": float(gn.eigenvalues[0] / top.eigenvalues[0]), **split}
    norms = None
    if jacobian and sharded:  # each rank its shard's points, gathered
        norms = sharded_jacobian_norms(obj, shard=False)
    if jacobian and rank == 0:
        from genlab.bounds.jacobian import jacobian_terms

        gn_top = result["gauss_newton"]["top_eigenvalues"][0] if gauss_newton else None
        result["jacobian"] = jacobian_terms(full, test_obj, gauss_newton_top=gn_top,
                                            hessian_top=result["top_eigenvalues"][0], train_norms=norms)
    result["memory"] = {**plan.as_dict(), "basis_columns_used": top.basis_columns}
    result["hvp_count"] = H.matvecs
    result["wall_time_s"] = time.perf_counter() - t0
    result.update(_peak_memory(obj.device))
    H.release()
    if rank != 0:
        return result
    if figures:
        result["figures"] = _figures(run_path, result, dens)
    write_json_atomic(run_path / "curvature.json", result)
    return result


def _peak_memory(device: torch.device) -> dict[str, int | None]:
    """This process's peak resident memory so far (bytes; the whole process, data loading included) and, on
    CUDA, the peak memory torch allocated on the device."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss *= 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kilobytes on Linux
    cuda = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"peak_rss_bytes": int(rss), "peak_cuda_bytes": cuda}


def _curvature_rank(run_dir: str, **kwargs) -> None:
    """One rank of ``curvature(..., nproc=N)`` (module level, so that spawned processes can import it)."""
    curvature(run_dir, **kwargs)


def _threshold(config) -> float | None:
    """``2 / lr`` (with heavy-ball momentum ``(2 + 2 beta) / lr``) for GD runs; ``None`` for others."""
    if config.optimizer.name == "gd":
        return (2 + 2 * config.optimizer.momentum) / config.optimizer.lr
    return None


def _fit_threshold(record: dict) -> float | None:
    """The same for a fit() run: full-batch torch.optim.SGD with one learning rate."""
    opt = record.get("optimizer", {})
    groups = opt.get("groups") or [{}]
    if record.get("full_batch") and opt.get("class") == "torch.optim.sgd.SGD" and len(groups) == 1:
        return (2 + 2 * float(groups[0].get("momentum", 0.0))) / float(groups[0]["lr"])
    return None


def _figures(run_path: Path, result: dict, dens) -> list[str]:
    from genlab.report.figures import pyplot, save_figure

    plt = pyplot()
    out = []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    vals = result["top_eigenvalues"]
    ax.stem(range(1, len(vals) + 1), vals)
    if result.get("stability_threshold"):
        ax.axhline(result["stability_threshold"], color="tab:red", ls="--", label="2/lr")
        ax.legend()
    ax.set(xlabel="index", ylabel="Hessian eigenvalue", title=f"top {len(vals)} eigenvalues")
    ax.grid(alpha=0.3)
    out.append(str(save_figure(fig, run_path / "figures" / "eigenvalues.png").relative_to(run_path)))
    if dens is not None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        grid, values = np.array(result["density"]["grid"]), np.array(result["density"]["values"])
        ax.semilogy(grid, np.maximum(values, 1e-12))
        ax.set(xlabel="eigenvalue", ylabel="density (log)", title="Hessian spectral density (SLQ)",
               ylim=(max(values.max() * 1e-8, 1e-12), values.max() * 2))
        ax.grid(alpha=0.3)
        out.append(str(save_figure(fig, run_path / "figures" / "spectral_density.png").relative_to(run_path)))
    return out
