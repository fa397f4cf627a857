"""Per-sample gradient covariance through the ``n x n`` Gram matrix (never a ``d x d`` matrix).

With per-sample gradients stacked as rows of ``G`` (``n x d``) and ``Gc = G - mean``,
the covariance ``C = Gc^T Gc / n`` (population normalisation: the covariance of the
gradient of one uniformly drawn training point) has the same non-zero eigenvalues
as the Gram matrix ``K = Gc Gc^T / n``; its eigenvectors are ``Gc^T u / sqrt(n lambda)``.
Cost: ``n`` per-sample gradients (``n x d`` numbers held at once) and one
``n x n`` eigendecomposition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlab.curvature.operators import flat_per_sample_grads
from genlab.objective import Objective, Params


@dataclass
class GradientCovariance:
    """Trace and top eigenpairs of the per-sample gradient covariance (or second moment)."""

    trace: float
    eigenvalues: torch.Tensor      # (k,) descending
    eigenvectors: torch.Tensor     # (d, k) orthonormal columns in parameter space
    mean_gradient: torch.Tensor    # (d,)
    n: int
    centered: bool

    def as_dict(self) -> dict:
        return {"trace": self.trace, "eigenvalues": [float(x) for x in self.eigenvalues], "n": self.n,
                "centered": self.centered, "mean_gradient_norm": float(self.mean_gradient.norm())}


def stacked_per_sample_grads(objective: Objective, indices: torch.Tensor | None = None,
                             params: Params | None = None) -> torch.Tensor:
    """All per-sample gradients over the dataset (or ``indices``) as one ``(n, d)`` matrix."""
    return torch.cat([flat_per_sample_grads(objective, xb, yb, params) for xb, yb in objective.chunks(indices)])


def gradient_covariance(objective: Objective, top_k: int = 10, *, indices: torch.Tensor | None = None,
                        params: Params | None = None, centered: bool = True) -> GradientCovariance:
    """Trace and top ``top_k`` eigenpairs of the per-sample gradient covariance, via the Gram matrix.

    ``centered=False`` gives the uncentred second moment (the empirical Fisher).
    """
    G = stacked_per_sample_grads(objective, indices, params)
    n = G.shape[0]
    mean = G.mean(dim=0)
    Gc = G - mean if centered else G
    K = (Gc @ Gc.T) / n
    vals, vecs = torch.linalg.eigh(K.double())
    order = torch.argsort(vals, descending=True)[:min(top_k, n)]
    vals = vals[order].clamp_min(0.0)
    U = vecs[:, order].to(G.dtype)
    V = Gc.T @ U
    V = V / V.norm(dim=0).clamp_min(torch.finfo(G.dtype).tiny)
    return GradientCovariance(trace=float(Gc.double().pow(2).sum() / n), eigenvalues=vals, eigenvectors=V,
                              mean_gradient=mean, n=n, centered=centered)
