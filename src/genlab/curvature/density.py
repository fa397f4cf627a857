"""Spectral density by stochastic Lanczos quadrature (Ghorbani, Krishnan, Xiao 2019; Lin, Saad, Yang 2016).

For a unit probe ``v``, ``m`` Lanczos steps from ``v`` give Ritz values
``theta_j`` (nodes) and the squared first components of the Ritz vectors
(weights): a Gauss quadrature with ``v^T f(A) v = sum_j w_j f(theta_j)``, exact for
polynomials of degree up to ``2m - 1`` (and for every ``f`` once ``m = d``).
Averaged over random probes this estimates the spectral measure
``(1/d) sum_i delta(lambda_i)``; smoothing with a Gaussian of width ``sigma``
gives a density.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genlab.curvature.operators import CurvatureOperator


@dataclass
class SpectralDensity:
    """Quadrature nodes and weights, one row per probe (each row's weights sum to 1)."""

    nodes: np.ndarray     # (probes, m)
    weights: np.ndarray   # (probes, m)
    matvecs: int

    def moment(self, f) -> float:
        """Estimate of ``(1/d) tr f(A)``."""
        return float(np.mean(np.sum(self.weights * f(self.nodes), axis=1)))

    def smoothed(self, grid: np.ndarray, sigma: float) -> np.ndarray:
        """Gaussian-smoothed density on ``grid`` (integrates to 1 over the real line)."""
        grid = np.asarray(grid, dtype=np.float64)
        diff = grid[:, None, None] - self.nodes[None]
        kern = np.exp(-0.5 * (diff / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        return np.mean(np.sum(self.weights[None] * kern, axis=2), axis=1)

    def grid(self, points: int = 400, pad: float = 0.05) -> np.ndarray:
        """A grid covering the nodes with a margin."""
        lo, hi = float(self.nodes.min()), float(self.nodes.max())
        span = max(hi - lo, 1e-12)
        return np.linspace(lo - pad * span, hi + pad * span, points)

    def as_dict(self) -> dict:
        return {"nodes": self.nodes.tolist(), "weights": self.weights.tolist(), "matvecs": self.matvecs}


def lanczos_tridiagonal(op: CurvatureOperator, v: torch.Tensor, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` Lanczos steps from ``v`` (full reorthogonalisation): the tridiagonal's diagonals."""
    steps = min(int(steps), op.dim)
    Q = torch.zeros(op.dim, steps, dtype=op.dtype, device=op.device)
    Q[:, 0] = v / v.norm()
    alphas, betas = [], []
    for j in range(steps):
        w = op.matvec(Q[:, j])
        alphas.append(float(torch.dot(w, Q[:, j])))
        for _ in range(2):
            w = w - Q[:, :j + 1] @ (Q[:, :j + 1].T @ w)
        beta = float(w.norm())
        if j + 1 == steps or beta <= 1e-12 * max(abs(a) for a in alphas + [1e-300]):
            break
        betas.append(beta)
        Q[:, j + 1] = w / beta
    return np.array(alphas), np.array(betas)


def slq(op: CurvatureOperator, num_probes: int = 10, steps: int = 80, *,
        generator: torch.Generator | None = None, probes: torch.Tensor | None = None) -> SpectralDensity:
    """Stochastic Lanczos quadrature with ``num_probes`` Rademacher probes of ``steps`` Lanczos steps.

    ``probes`` (``(d, p)``) replaces the random probes (e.g. the identity's columns,
    which make the estimate exact when ``steps = d``).
    """
    start = op.matvecs
    if probes is None:
        from genlab.curvature.trace import rademacher
        probes = rademacher((op.dim, num_probes), generator, op.dtype, op.device)
    rows_n, rows_w = [], []
    for v in probes.T:
        a, b = lanczos_tridiagonal(op, v.to(op.device, op.dtype), steps)
        T = np.diag(a) + np.diag(b, 1) + np.diag(b, -1)
        theta, S = np.linalg.eigh(T)
        rows_n.append(theta)
        rows_w.append(S[0] ** 2)
    width = max(len(r) for r in rows_n)
    # probes that broke down early have fewer nodes: pad with zero-weight nodes
    nodes = np.array([np.pad(r, (0, width - len(r)), constant_values=r[-1]) for r in rows_n])
    weights = np.array([np.pad(r, (0, width - len(r))) for r in rows_w])
    return SpectralDensity(nodes, weights, op.matvecs - start)
