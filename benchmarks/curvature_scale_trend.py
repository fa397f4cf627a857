"""How genlab's lead over PyHessian on the BatchNorm ResNet-20 moves with the number of images, in one run: the
eigenvalue comparison of ``curvature_scale`` (top-1 and top-5 to 1e-4, one DataLoader for both, float32) at 256,
512 and 1,024 Fashion-MNIST images, on the same trained model.

Why: issue 19's case is all 60,000 images, where one Hessian-vector product of this width-16 ResNet-20 takes
about 7.5 minutes on the 2-core CPU these results are taken on, so the full comparison (hundreds of products)
needs a GPU (``GENLAB_SCALE_FULL=1 GENLAB_SCALE_DEVICE=cuda python -m benchmarks curvature_scale``). The speed
ratio is one of product counts (both stream the same loader at the same cost per product), and the product
counts follow the spectrum: PyHessian's power iteration converges like ``(lambda_2 / lambda_1)^k``, Lanczos
much faster when that ratio is close to 1. That ratio belongs to the trained model: the same seed trained a
model with lambda_2 / lambda_1 = 0.57 on one host and 0.41 on another, and the speed ratios moved with it more
than with n. This benchmark records the spectrum and the ratios at 256 to 1,024 images; 1,024 is what fits a
session on this CPU with float64 references (62 minutes for the three sizes on 2026-12-04: a float64 product
costs 8x a float32 one here, and PyHessian's top-5 needs about a hundred products). ``GENLAB_TREND_SIZES=256,512``
runs other sizes.

Reference eigenvalues: float64 Lanczos to relative residual 1e-9 at every size. Speed only: no trace, no
density (``curvature_scale`` has those at 256). Each method is credited its cheapest setting within 1e-4 of the
reference on every wanted eigenvalue, PyHessian's top-5 from tolerance 1e-4 down; PyHessian's top-1 ladder is
replayed from one 60-product run (a tolerance it cannot meet within 60 makes the ratio a lower bound).
"""

from __future__ import annotations

import json
import os

from benchmarks.common import record
from benchmarks.curvature_scale import _ratio, compare_with_pyhessian

DEFAULT_SIZES = "256,512,1024"


def sizes() -> tuple[int, ...]:
    """The image counts to compare at: ``GENLAB_TREND_SIZES`` (comma-separated), read when the benchmark runs
    rather than when ``python -m benchmarks`` imports every module."""
    return tuple(int(n) for n in os.environ.get("GENLAB_TREND_SIZES", DEFAULT_SIZES).split(","))


def main() -> dict:
    ns = sizes()
    cases = {}
    for n in ns:
        cases[str(n)] = compare_with_pyhessian(n, 20, 16, long_run=60, trace_and_density=False)
    trend = {n: {"top_pair_ratio": c["top_pair_ratio"], "hvp_s": c["hvp_s"],
                 "top1": _ratio(c["speedup_vs_pyhessian"]["top1"]), "top5": _ratio(c["speedup_vs_pyhessian"]["top5"]),
                 "hvps": {k: (v["chosen"] or {}).get("matvecs") for k, v in c["methods"].items()}}
             for n, c in cases.items()}
    figures = {"cases": cases, "trend": trend}

    def r(v):
        return None if v is None else round(v, 2)

    targets = {
        f"top-1 to 1e-4 >= 5x faster than PyHessian at {ns[-1]} images (measured {r(trend[str(ns[-1])]['top1'])}x; "
        f"{r(trend[str(ns[0])]['top1'])}x at {ns[0]})": (trend[str(ns[-1])]["top1"] or 0) >= 5,
        f"top-5 to 1e-4 >= 10x faster than PyHessian at {ns[-1]} images (measured {r(trend[str(ns[-1])]['top5'])}x; "
        f"{r(trend[str(ns[0])]['top5'])}x at {ns[0]})": (trend[str(ns[-1])]["top5"] or 0) >= 10,
    }
    print(json.dumps(trend, indent=1))
    return record("curvature_scale_trend", figures, targets)


if __name__ == "__main__":
    print(json.dumps(main()["targets"], indent=1))
