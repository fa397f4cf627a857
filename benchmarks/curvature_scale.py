"""Curvature of a whole dataset streamed from a DataLoader: memory flat in n, and genlab against PyHessian on a
BatchNorm ResNet over the same loader.

Both parts read Fashion-MNIST through a plain ``torch.utils.data.DataLoader`` over a dataset that keeps the
images as uint8 and normalises each when it is read (``benchmarks.hvp_streaming.UInt8Images``); genlab's
Objective and PyHessian's ``hessian(..., dataloader=loader)`` stream it batch by batch, one batch's graph at a
time, nothing cached.

* ``memory``: a full-dataset Lanczos for the top 5 eigenvalues of LeNet-5's Hessian (float32) with its basis
  capped at 8 vectors (``max_basis``: thick restarts) and a fixed 12 products (so both sizes do the same work,
  one restart included), each size in a fresh process, peak resident memory sampled every millisecond: 60,000
  images against 10,000. Target: within 1.2x.
* ``pyhessian``: genlab's ``resnet`` (depth 20, BatchNorm, eval mode), trained briefly (Adam, 2 epochs on 5,000
  images) so BatchNorm has real running statistics, then the Hessian of the mean cross-entropy over ``n``
  training images: top-1 and top-5 eigenvalues to 1e-4 relative (each against a float64 Lanczos reference to
  residual 1e-9), the trace and the spectral density, genlab and PyHessian 0.1 on the same model and loader,
  both float32. Each method is credited with the cheapest setting on its ladder that is within 1e-4 of the
  reference on every wanted eigenvalue (as ``curvature_speed`` does). PyHessian's top-1 ladder is replayed
  exactly from one long run's Rayleigh quotients (its stopping rule only compares consecutive ones); its top-5
  (deflation, one eigenvalue after another) is run for real, tolerance by tolerance from 1e-4 down (the record
  of 2026-12-03 started at 1e-5), until all five are within 1e-4. Trace: Hutch++ against PyHessian's Hutchinson with the same number of products (their standard errors).
  Density: SLQ against PyHessian's, one probe of the same number of Lanczos steps (times; PyHessian 0.1's
  density calls ``torch.eig``, removed in torch 2.0, so the benchmark lends it an ``eigh``-based stand-in).
  Targets (issue 19): top-1 >= 5x and top-5 >= 10x faster than PyHessian.

Scale: the issue's case is depth 20 on all 60,000 images. On the 2-core CPU this was recorded on, one
Hessian-vector product of the width-16 ResNet-20 over 60,000 images takes about 7.5 minutes (7.5 s per 1,000
images), and PyHessian's top-5 needs about a hundred of them, so the recorded run uses ``n = 256`` images
(``GENLAB_SCALE_FULL=1`` runs all 60,000, for a machine with a GPU: ``GENLAB_SCALE_DEVICE=cuda``;
``GENLAB_SCALE_KEEP_MEMORY=1`` reruns the ResNet part only and keeps the recorded memory figures). Both methods stream the same loader, so the ratio is one of product counts and
per-product overheads; it does not depend on n beyond that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import record
from benchmarks.curvature_speed import pyhessian_stop
from benchmarks.hvp_streaming import UInt8Images, _images, _rss, peak_rss_during

ROOT = Path(__file__).resolve().parents[1]
ACCURACY = 1e-4
FULL = os.environ.get("GENLAB_SCALE_FULL") == "1"
DEVICE = os.environ.get("GENLAB_SCALE_DEVICE", "cpu")


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# ------------------------------------------------------------------ memory

def lanczos_memory(n: int, products: int = 12, max_basis: int = 8) -> dict:
    """In this process: peak RSS of a streamed full-dataset Lanczos (top 5, LeNet-5) over n images."""
    import torch
    from torch.utils.data import DataLoader

    from genlab.curvature import HessianOperator, lanczos
    from genlab.models import build_model
    from genlab.objective import Objective

    pixels, labels, mean, std = _images(n, "fashion-mnist")
    torch.manual_seed(0)
    model = build_model("lenet5", (1, 28, 28), 10)
    obj = Objective(model, "ce", DataLoader(UInt8Images(pixels, labels, mean, std), batch_size=1000))
    H = HessianOperator(obj)
    H.matvec(torch.randn(H.dim))  # warm-up: allocator pools, kernels
    before = _rss()
    peak, seconds, res = peak_rss_during(lambda: lanczos(H, 5, tol=0.0, max_iter=products, max_basis=max_basis,
                                                         generator=torch.Generator().manual_seed(0)))
    return {"n": n, "params": H.dim, "products": res.matvecs, "basis_columns": res.basis_columns,
            "rss_before_mb": before / 2 ** 20, "peak_mb": peak / 2 ** 20,
            "lanczos_increment_mb": (peak - before) / 2 ** 20, "lanczos_s": seconds,
            "top_eigenvalues": [float(x) for x in res.eigenvalues]}


def _in_fresh_process(n: int) -> dict:
    code = f"import json; from benchmarks.curvature_scale import lanczos_memory; print(json.dumps(lanczos_memory({n})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the ResNet case

def resnet_case(n: int, depth: int, width: int):
    """A briefly trained BatchNorm ResNet (eval mode) and a loader over n Fashion-MNIST training images."""
    import torch
    from torch.utils.data import DataLoader

    from genlab.models import build_model

    pixels, labels, mean, std = _images(max(n, 5000), "fashion-mnist")
    data = UInt8Images(pixels, labels, mean, std)
    torch.manual_seed(0)
    model = build_model("resnet", (1, 28, 28), 10, depth=depth, width=width).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = DataLoader(data, batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(0))
    model.train()
    for _ in range(2):
        for xb, yb in train:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb.to(DEVICE)), yb.to(DEVICE)).backward()
            opt.step()
    model.eval()
    subset = UInt8Images(pixels[:n], labels[:n], mean, std)
    return model, DataLoader(subset, batch_size=128)


def genlab_top(model, loader, k, tol, error):
    import torch

    from genlab.curvature import HessianOperator, lanczos
    from genlab.objective import Objective

    def go():
        H = HessianOperator(Objective(model, "ce", loader, device=DEVICE))
        return lanczos(H, k, tol=tol, error=error, max_iter=600, generator=torch.Generator().manual_seed(0))
    res, t = _timed(go)
    return [float(x) for x in res.eigenvalues], res.matvecs, t


class _CountedPyHessian:
    """PyHessian's ``hessian`` over the loader, counting its products and keeping their Rayleigh quotients."""

    def __init__(self, model, loader):
        import importlib

        self.ph = importlib.import_module("pyhessian.hessian")  # the module (the package exports the class)
        self.model, self.loader = model, loader
        self.count, self.quotients = 0, []

    def __enter__(self):
        cls = self.ph.hessian
        self.original = cls.dataloader_hv_product
        outer = self

        def counted(this, v):
            outer.count += 1
            eig, hv = outer.original(this, v)
            outer.quotients.append(float(eig))
            return eig, hv
        cls.dataloader_hv_product = counted
        return self

    def __exit__(self, *exc):
        self.ph.hessian.dataloader_hv_product = self.original

    def new(self):
        import torch

        torch.manual_seed(0)
        self.count, self.quotients = 0, []
        return self.ph.hessian(self.model, torch.nn.CrossEntropyLoss(), dataloader=self.loader,
                               cuda=DEVICE.startswith("cuda"))


def _eig_shim(T, eigenvectors=False):
    """``torch.eig``'s old return shape (eigenvalues as (m, 2) real/imaginary columns, eigenvectors) for a
    symmetric ``T`` (PyHessian's tridiagonal), by ``torch.linalg.eigh``."""
    import torch

    vals, vecs = torch.linalg.eigh(T)
    return torch.stack([vals, torch.zeros_like(vals)], dim=1), vecs


def _rel(vals, ref):
    return max(abs(v - r) / abs(r) for v, r in zip(vals, ref))


def _cheapest(ref, runs):
    tried = [{"setting": s, "values": v, "rel_error": _rel(v, ref), "matvecs": m, "time_s": t} for s, (v, m, t) in runs]
    ok = [r for r in tried if r["rel_error"] <= ACCURACY]
    return (min(ok, key=lambda r: r["time_s"]) if ok else None), tried


def _reference(model, loader) -> dict:
    """The top 5 eigenvalues every method is judged against: float64 Lanczos to relative residual 1e-9."""
    import copy

    import torch

    from genlab.curvature import HessianOperator, lanczos
    from genlab.objective import Objective

    m64 = copy.deepcopy(model).double()
    res, secs = _timed(lambda: lanczos(HessianOperator(Objective(m64, "ce", loader, device=DEVICE)), 5, tol=1e-9,
                                       max_iter=800, generator=torch.Generator().manual_seed(1)))
    return {"top5": [float(x) for x in res.eigenvalues], "matvecs": res.matvecs, "converged": res.converged,
            "time_s": secs}


def compare_with_pyhessian(n: int, depth: int, width: int, long_run: int = 300, *,
                           trace_and_density: bool = True) -> dict:
    """genlab against PyHessian on the ResNet case over ``n`` images (module docstring);
    ``trace_and_density=False``: the eigenvalue comparison alone."""
    import torch

    from genlab.curvature import HessianOperator
    from genlab.objective import Objective

    (model, loader), t_train = _timed(lambda: resnet_case(n, depth, width))
    ref_info = _reference(model, loader)
    ref = ref_info["top5"]
    out = {"n": n, "depth": depth, "width": width, "params": sum(p.numel() for p in model.parameters()),
           "device": DEVICE, "train_s": t_train, "reference": ref_info, "top_pair_ratio": ref[1] / ref[0]}
    # one product's time (genlab's operator over the loader)
    H = HessianOperator(Objective(model, "ce", loader, device=DEVICE))
    v = torch.randn(H.dim, device=DEVICE)
    H.matvec(v)
    out["hvp_s"] = min(_timed(lambda: H.matvec(v))[1] for _ in range(2))
    ladder = [("gap", 1e-3), ("gap", 1e-4), ("residual", 1e-4)]
    methods = {}
    for k in (1, 5):
        runs = [(f"tol={t:g} {e}", genlab_top(model, loader, k, t, e)) for e, t in ladder]
        methods[f"genlab_top{k}"] = _cheapest(ref[:k], runs)
    with _CountedPyHessian(model, loader) as ph:
        h = ph.new()
        (vals, _), t_default = _timed(lambda: h.eigenvalues(maxIter=100, tol=1e-3, top_n=1))
        out["pyhessian_default_top1"] = {"value": float(vals[0]), "rel_error": _rel([vals[0]], ref[:1]),
                                         "matvecs": ph.count, "time_s": t_default}
        h = ph.new()
        _, t_long = _timed(lambda: h.eigenvalues(maxIter=long_run, tol=0.0, top_n=1))
        quotients, per = list(ph.quotients), t_long / max(ph.count, 1)
        runs = []
        for t in (1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7):
            val, m = pyhessian_stop(quotients, t, long_run)
            runs.append((f"tol={t:g} maxIter={long_run} (replayed)", ([val], m, m * per)))
        methods["pyhessian_top1"] = _cheapest(ref[:1], runs)
        runs = []
        for t in (1e-4, 1e-5, 1e-6, 1e-7):  # from the loosest: PyHessian is credited its cheapest accurate try
            h = ph.new()
            (vals, _), secs = _timed(lambda t=t: h.eigenvalues(maxIter=200, tol=t, top_n=5))
            runs.append((f"tol={t:g} maxIter=200", ([float(x) for x in vals], ph.count, secs)))
            if _rel(runs[-1][1][0], ref) <= ACCURACY:
                break
        methods["pyhessian_top5"] = _cheapest(ref, runs)
        if trace_and_density:
            _pyhessian_trace_and_density(ph, out)
    if trace_and_density:
        _genlab_trace_and_density(model, loader, out)
    out["methods"] = {k: {"chosen": b, "tried": tr} for k, (b, tr) in methods.items()}
    speed = {}
    for k in (1, 5):
        ours, theirs = methods[f"genlab_top{k}"][0], methods[f"pyhessian_top{k}"]
        if ours is None:
            speed[f"top{k}"] = None
        elif theirs[0] is None:  # never reached 1e-4: at least the slowest try
            speed[f"top{k}"] = {"at_least": max(r["time_s"] for r in theirs[1]) / ours["time_s"]}
        else:
            speed[f"top{k}"] = theirs[0]["time_s"] / ours["time_s"]
    out["speedup_vs_pyhessian"] = speed
    return out


TRACE_PRODUCTS = 60


def _pyhessian_trace_and_density(ph, out: dict) -> None:
    """PyHessian's Hutchinson trace (``TRACE_PRODUCTS`` products) and its 40-step SLQ density, into ``out``."""
    import numpy as np
    import torch

    budget = TRACE_PRODUCTS
    h = ph.new()
    samples, t_ph_trace = _timed(lambda: h.trace(maxIter=budget, tol=0.0))
    ph_trace = {"value": float(np.mean(samples)), "std_error": float(np.std(samples, ddof=1) / np.sqrt(len(samples))),
                "matvecs": ph.count, "time_s": t_ph_trace}
    h = ph.new()
    old_eig = getattr(torch, "eig", None)
    torch.eig = _eig_shim  # PyHessian 0.1's density calls torch.eig, removed from torch in 2.0
    try:
        (dens_ph, _), t_ph_dens = _timed(lambda: h.density(iter=40, n_v=1))
    finally:
        torch.eig = old_eig
    ph_density = {"steps": 40, "matvecs": ph.count, "time_s": t_ph_dens, "top_ritz": float(max(dens_ph[0]))}
    out["trace"] = {"pyhessian_hutchinson": ph_trace}
    out["density"] = {"pyhessian": ph_density}


def _genlab_trace_and_density(model, loader, out: dict) -> None:
    """genlab's Hutch++ trace and SLQ density (one probe, 40 steps) beside PyHessian's, into ``out``."""
    import torch

    from genlab.curvature import HessianOperator, hutchpp, slq
    from genlab.objective import Objective

    ph_trace, ph_density = out["trace"]["pyhessian_hutchinson"], out["density"]["pyhessian"]
    H = HessianOperator(Objective(model, "ce", loader, device=DEVICE))
    est, t_tr = _timed(lambda: hutchpp(H, TRACE_PRODUCTS, generator=torch.Generator().manual_seed(0)))
    H = HessianOperator(Objective(model, "ce", loader, device=DEVICE))
    dens, t_dens = _timed(lambda: slq(H, 1, 40, generator=torch.Generator().manual_seed(0)))
    out["trace"] = {"genlab_hutchpp": {"value": est.value, "std_error": est.std_error, "matvecs": est.matvecs,
                                       "time_s": t_tr}, "pyhessian_hutchinson": ph_trace,
                    "std_error_ratio_pyhessian_over_genlab": ph_trace["std_error"] / est.std_error}
    out["density"] = {"genlab_slq": {"steps": 40, "matvecs": H.matvecs, "time_s": t_dens,
                                     "top_ritz": float(dens.nodes.max())},
                      "pyhessian": ph_density, "time_ratio_pyhessian_over_genlab": ph_density["time_s"] / t_dens}


def _ratio(v):
    return None if v is None else (v["at_least"] if isinstance(v, dict) else v)


def main() -> dict:
    from benchmarks.common import RESULTS

    recorded = RESULTS / "curvature_scale.json"
    if os.environ.get("GENLAB_SCALE_KEEP_MEMORY") == "1" and recorded.is_file():  # rerun the ResNet part only
        kept = json.loads(recorded.read_text())["figures"]
        small, large = kept["memory_10k"], kept["memory_60k"]
    else:
        small, large = _in_fresh_process(10_000), _in_fresh_process(60_000)
    mem_ratio = large["peak_mb"] / small["peak_mb"]
    case = compare_with_pyhessian(*((60_000, 20, 16) if FULL else (256, 20, 16)), long_run=100)
    s1, s5 = _ratio(case["speedup_vs_pyhessian"]["top1"]), _ratio(case["speedup_vs_pyhessian"]["top5"])
    targets = {
        f"peak memory of a streamed full-dataset Lanczos at 60,000 images within 1.2x of 10,000 (measured "
        f"{mem_ratio:.3f}x)": mem_ratio <= 1.2,
        f"ResNet-{case['depth']} (BatchNorm) top-1 to 1e-4 >= 5x faster than PyHessian on the same loader "
        f"(measured {s1 if s1 is None else round(s1, 1)}x)": s1 is not None and s1 >= 5,
        f"ResNet-{case['depth']} (BatchNorm) top-5 to 1e-4 >= 10x faster than PyHessian on the same loader "
        f"(measured {s5 if s5 is None else round(s5, 1)}x)": s5 is not None and s5 >= 10,
        "Hutch++ trace standard error below PyHessian's Hutchinson at the same products":
            case["trace"]["std_error_ratio_pyhessian_over_genlab"] > 1,
    }
    figures = {"memory_10k": small, "memory_60k": large, "peak_ratio_60k_over_10k": mem_ratio, "resnet": case,
               "full_scale": FULL}
    print(f"memory 10k {small['peak_mb']:.0f} MB, 60k {large['peak_mb']:.0f} MB ({mem_ratio:.3f}x); "
          f"vs PyHessian: top-1 {s1}x, top-5 {s5}x")
    return record("curvature_scale", figures, targets)


if __name__ == "__main__":
    print(json.dumps(main()["targets"], indent=1))
