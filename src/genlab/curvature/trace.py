"""Trace of a symmetric operator from products alone: Hutchinson and Hutch++.

* Hutchinson: ``tr A ~ (1/m) sum_j z_j^T A z_j`` with Rademacher ``z_j``; unbiased,
  standard error reported from the sample.
* Hutch++ (Meyer, Musco, Musco, Woodruff 2021): spend a third of the products on
  a sketch ``Q = orth(A S)``, take ``tr(Q^T A Q)`` exactly and Hutchinson on the
  deflated rest ``(I - QQ^T) A (I - QQ^T)``; far lower variance when a few large
  eigenvalues dominate, as in a network's Hessian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genlab.curvature.operators import CurvatureOperator


@dataclass
class TraceEstimate:
    """Estimated trace, its standard error (``nan`` when not estimable) and the products used."""

    value: float
    std_error: float
    matvecs: int
    method: str

    def as_dict(self) -> dict:
        return {"value": self.value, "std_error": self.std_error, "matvecs": self.matvecs, "method": self.method}


def rademacher(shape, generator: torch.Generator | None, dtype: torch.dtype, device) -> torch.Tensor:
    """Independent +-1 entries (drawn on the CPU so results do not depend on the device)."""
    z = torch.randint(0, 2, shape, generator=generator, dtype=torch.int64)
    return (2 * z - 1).to(device=device, dtype=dtype)


def hutchinson(op: CurvatureOperator, num_samples: int = 100, *,
               generator: torch.Generator | None = None) -> TraceEstimate:
    """Hutchinson's estimate of ``tr A`` from ``num_samples`` Rademacher probes."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, not {num_samples}")
    start = op.matvecs
    values = []
    for _ in range(num_samples):
        z = rademacher((op.dim,), generator, op.dtype, op.device)
        values.append(float(torch.dot(z, op.matvec(z))))
    t = torch.tensor(values, dtype=torch.float64)
    se = float(t.std() / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return TraceEstimate(float(t.mean()), se, op.matvecs - start, "hutchinson")


def hutchpp(op: CurvatureOperator, num_matvecs: int = 99, *,
            generator: torch.Generator | None = None) -> TraceEstimate:
    """Hutch++ estimate of ``tr A`` with about ``num_matvecs`` products (a multiple of 3 is used).

    With ``m = num_matvecs // 3``: ``m`` products sketch ``Q = orth(A S)``, ``m``
    give ``tr(Q^T A Q)``, ``m`` estimate the deflated remainder. When ``3m >= d``
    the sketch spans everything and the value is exact up to rounding.
    """
    m = num_matvecs // 3
    if m < 1:
        raise ValueError(f"num_matvecs must be >= 3, not {num_matvecs}")
    start = op.matvecs
    m = min(m, op.dim)
    S = rademacher((op.dim, m), generator, op.dtype, op.device)
    Q, _ = torch.linalg.qr(op.matvec(S))
    top = float(torch.trace(Q.T @ op.matvec(Q)))
    if m >= op.dim:
        return TraceEstimate(top, 0.0, op.matvecs - start, "hutch++")
    G = rademacher((op.dim, m), generator, op.dtype, op.device)
    G = G - Q @ (Q.T @ G)
    AG = op.matvec(G)
    per = (G * (AG - Q @ (Q.T @ AG))).sum(dim=0).double()
    rest = float(per.mean())
    se = float(per.std() / math.sqrt(m)) if m > 1 else math.nan
    return TraceEstimate(top + rest, se, op.matvecs - start, "hutch++")
