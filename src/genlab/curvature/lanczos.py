"""Top eigenvalues of a symmetric operator: Lanczos with full reorthogonalisation, and power iteration.

:func:`lanczos` builds a Krylov basis one product at a time, re-orthogonalising
every new vector against the whole basis twice (classical Gram-Schmidt, twice is
enough in floating point), and stops as soon as the wanted Ritz pairs have
residuals ``||A u - theta u|| <= tol * |theta|``. For a symmetric matrix that
residual bounds the eigenvalue error (``|lambda - theta| <= residual``, and
``<= residual^2 / gap`` once the pair is isolated), so ``tol`` is a guaranteed
relative accuracy of each reported eigenvalue. Warm starts (``v0`` = the last
eigenvector, as in sharpness tracking) converge in a handful of products.

The basis is the solver's memory (``m`` vectors of ``d`` numbers after ``m`` products). ``max_basis`` caps
it: when the basis is full, the run restarts *thick* (Wu & Simon 2000, "Thick-restart Lanczos method for
large symmetric eigenvalue problems"): it keeps the best Ritz vectors, whose Rayleigh quotient matrix is
diagonal plus one coupling row to the next Lanczos vector, and goes on from there. The relation
``A Q = Q T + beta q e^T`` holds across restarts, so the residual test (and its guarantee) is unchanged;
only more products may be needed.

:func:`power_iteration` is the fallback (and PyHessian's method): it stops when
the Rayleigh quotient changes by less than ``tol`` relatively between two
iterations, which can be far from converged when the top two eigenvalues are
close.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from genlab.curvature.operators import CurvatureOperator


@dataclass
class EigenResult:
    """Eigenvalues (descending), eigenvectors as columns ``(d, k)``, and what it cost."""

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    residuals: list[float]
    matvecs: int
    iterations: int
    converged: bool
    method: str = "lanczos"
    history: list[float] = field(default_factory=list)  # the top estimate after each product
    basis_columns: int = 0  # the most basis vectors held at once (the solver's memory: that many d-vectors)

    def as_dict(self) -> dict:
        """JSON-able summary (no eigenvectors)."""
        return {"eigenvalues": [float(x) for x in self.eigenvalues], "residuals": self.residuals,
                "matvecs": self.matvecs, "iterations": self.iterations, "converged": self.converged,
                "method": self.method}


def _random_unit(op: CurvatureOperator, generator: torch.Generator | None) -> torch.Tensor:
    v = torch.randn(op.dim, generator=generator, dtype=torch.float64).to(op.device, op.dtype)
    return v / v.norm()


def _select(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices of the k wanted Ritz values: largest algebraic ("LA") or largest magnitude ("LM")."""
    order = np.argsort(-theta) if which == "LA" else np.argsort(-np.abs(theta))
    return order[:k]


def lanczos(op: CurvatureOperator, k: int = 1, *, tol: float = 1e-4, max_iter: int = 200, which: str = "LA",
            v0: torch.Tensor | None = None, generator: torch.Generator | None = None,
            min_iter: int = 0, error: str = "residual", max_basis: int | None = None) -> EigenResult:
    """The ``k`` top eigenpairs of ``op`` by Lanczos with full reorthogonalisation.

    Args:
        op: any :class:`CurvatureOperator` (or object with ``dim``, ``dtype``, ``device``, ``matvec``).
        k: how many eigenpairs.
        tol: stop when every wanted Ritz pair has ``||A u - theta u|| <= tol * |theta|``
            (``|theta|`` floored at ``1e-12`` times the largest Ritz magnitude).
        max_iter: at most this many products (the Krylov dimension); capped at ``d``.
        which: ``"LA"`` largest algebraic (sharpness), ``"LM"`` largest magnitude.
        v0: start vector (a warm start); random (from ``generator``) if absent.
            A ``(d, m)`` matrix is summed into one start vector.
        min_iter: take at least this many products (guards against lucky early stops
            from a start vector orthogonal to an eigenvector).
        error: the error estimate ``tol`` bounds. ``"residual"``: the residual norm
            ``r``, a guaranteed bound on ``|lambda - theta|``. ``"gap"``:
            ``min(r, r^2 / gap)`` with ``gap`` the distance to the nearest other Ritz
            value, the usual a-posteriori estimate (Parlett, *The Symmetric
            Eigenvalue Problem*, 11.7), and not below the geometric tail of the
            top Ritz value's last increments (the Ritz gap over-estimates the true
            gap in a small Krylov space, so the gap term alone stopped after two
            products 1e-3 off). Far fewer products for the same true accuracy, but
            an estimate, not a bound (the benchmarks check it against converged
            references); needs at least three products. It trusts the Ritz gap, so
            from a cold start a close pair the Krylov space has not resolved yet is
            invisible to it (the Ritz value sits between the pair, off by up to the
            residual): use it with warm starts near the top direction, as tracking does.
        max_basis: keep at most this many basis vectors (memory ``max_basis x d``), restarting thick when
            the basis is full (module docstring); ``None`` (default): no cap, the basis grows to ``max_iter``.
            At least ``k + 2``. ``max_iter`` still counts every product, restarts included.

    Returns:
        :class:`EigenResult` with eigenvalues in descending order (by ``which``).
    """
    if which not in ("LA", "LM"):
        raise ValueError(f"which must be 'LA' or 'LM', not {which!r}")
    if error not in ("residual", "gap"):
        raise ValueError(f"error must be 'residual' or 'gap', not {error!r}")
    d = op.dim
    k = int(k)
    if not 1 <= k <= d:
        raise ValueError(f"k must be in 1..{d}, not {k}")
    max_iter = int(max_iter) if max_basis is not None else min(int(max_iter), d)
    if max_basis is not None:
        max_basis = min(int(max_basis), d)
        if max_basis < min(k + 2, d):
            raise ValueError(f"max_basis must be at least k + 2 = {k + 2} (got {max_basis})")
    cap = max_iter if max_basis is None else max_basis  # most columns Q ever holds, minus the next vector
    start = op.matvecs
    if v0 is None:
        q = _random_unit(op, generator)
    else:
        q = torch.as_tensor(v0).to(op.device, op.dtype)
        q = q.sum(dim=1) if q.dim() == 2 else q.reshape(-1)
        nrm = q.norm()
        q = _random_unit(op, generator) if not torch.isfinite(nrm) or nrm == 0 else q / nrm
    # the basis grows in blocks: allocating (d, max_iter) up front costs more than a short warm-started run
    Q = torch.empty(d, min(cap + 1, 32), dtype=op.dtype, device=op.device)
    # T = Q^T A Q: tridiagonal, except after a thick restart (diagonal block of kept Ritz values + one arrow row)
    T = np.zeros((min(cap + 1, 32),) * 2)
    Q[:, 0] = q
    residuals: list[float] = []
    history: list[float] = []
    converged = False
    m = 0  # basis vectors whose column of T is complete
    products = 0
    theta = S = None
    idx = None
    while products < max_iter:
        w = op.matvec(Q[:, m])
        products += 1
        alpha = float(torch.dot(w, Q[:, m]))
        T[m, m] = alpha
        # full reorthogonalisation against the basis so far, twice
        basis = Q[:, :m + 1]
        for _ in range(2):
            w = w - basis @ (basis.T @ w)
        beta = float(w.norm())
        m += 1
        theta, S = np.linalg.eigh(T[:m, :m])
        kk = min(k, m)
        idx = _select(theta, kk, which)
        history.append(float(theta[idx[0]]))
        scale = max(float(np.abs(theta).max()), 1e-300) * 1e-12
        residuals = [abs(beta * S[-1, i]) for i in idx]
        if error == "residual":
            errors = residuals
        else:
            # the Ritz gap over-estimates the true gap early on (interlacing: the other Ritz values lie below
            # the eigenvalues they approximate), so the estimate also waits for the top Ritz value to settle
            tail = _tail_estimate(history)
            errors = [max(_gap_error(r, theta, i), tail) for r, i in zip(residuals, idx)]
        ok = kk == k and all(e <= tol * max(abs(theta[i]), scale) for e, i in zip(errors, idx))
        if ok and products >= min_iter:
            converged = True
            break
        if products >= max_iter or m >= d and beta > 1e-12 * max(float(np.abs(theta).max()), 1e-300):
            break
        if beta <= 1e-12 * max(float(np.abs(theta).max()), 1e-300):
            # invariant subspace found: exact eigenpairs within it; continue with a fresh
            # direction orthogonal to the basis if more pairs (or iterations) are needed
            if kk == k and products >= min_iter:
                converged = True
                residuals = [0.0] * k
                break
            if m >= d:
                break
            if m >= cap:  # no room for a fresh direction: restart around the wanted Ritz vectors
                Q, T, m = _thick_restart(Q, T, m, theta, S, _select(theta, _keep(k, cap, m), which), 0.0, None)
            r = _random_unit(op, generator)
            for _ in range(2):
                r = r - Q[:, :m] @ (Q[:, :m].T @ r)
            Q, T = _room(Q, T, m, cap)
            Q[:, m] = r / r.norm()
            continue
        if m >= cap:  # the basis is full: keep the best Ritz vectors, go on from the next Lanczos vector
            Q, T, m = _thick_restart(Q, T, m, theta, S, _select(theta, _keep(k, cap, m), which), beta, w / beta)
            continue
        Q, T = _room(Q, T, m, cap)
        Q[:, m] = w / beta
        T[m - 1, m] = T[m, m - 1] = beta
    S_t = torch.from_numpy(S[:, idx]).to(op.device, op.dtype)
    vecs = Q[:, :m] @ S_t
    vals = torch.tensor(theta[idx], dtype=torch.float64)
    return EigenResult(vals, vecs, [float(r) for r in residuals], op.matvecs - start, products, converged,
                       history=history, basis_columns=int(Q.shape[1]))


def _keep(k: int, cap: int, m: int) -> int:
    """Ritz vectors a thick restart keeps: the wanted ``k`` and half the spare room (Wu & Simon's choice),
    leaving room for at least one new product."""
    return min(max(k, k + (cap - k) // 2), m - 1, cap - 1)


def _thick_restart(Q: torch.Tensor, T: np.ndarray, m: int, theta: np.ndarray, S: np.ndarray, keep: np.ndarray,
                   beta: float, q_next: torch.Tensor | None) -> tuple[torch.Tensor, np.ndarray, int]:
    """Replace the ``m``-vector basis by the kept Ritz vectors ``Q S[:, keep]`` (plus the next Lanczos vector).

    Then ``T`` is ``diag(theta[keep])`` with the coupling ``beta * S[-1, keep]`` to the next vector, which keeps
    ``A Q = Q T + beta q e^T`` (Wu & Simon 2000).
    """
    j = len(keep)
    S_k = torch.from_numpy(np.ascontiguousarray(S[:, keep])).to(Q.device, Q.dtype)
    Q[:, :j] = Q[:, :m] @ S_k
    T[:] = 0.0
    T[np.arange(j), np.arange(j)] = theta[keep]
    if q_next is not None:
        Q[:, j] = q_next
        T[:j, j] = T[j, :j] = beta * S[-1, keep]
    return Q, T, j


def _room(Q: torch.Tensor, T: np.ndarray, m: int, cap: int) -> tuple[torch.Tensor, np.ndarray]:
    """``Q`` (and ``T``) with room for at least ``m + 1`` basis vectors (doubling, capped at ``cap + 1``)."""
    if m < Q.shape[1]:
        return Q, T
    size = min(2 * Q.shape[1], cap + 1)
    bigger = torch.empty(Q.shape[0], size, dtype=Q.dtype, device=Q.device)
    bigger[:, :Q.shape[1]] = Q
    T2 = np.zeros((size, size))
    T2[:T.shape[0], :T.shape[1]] = T
    return bigger, T2


def _tail_estimate(history: list[float]) -> float:
    """How far the top Ritz value may still move: the last increment, or its geometric tail if larger.

    The increments of a converging Lanczos Ritz value shrink roughly geometrically with ratio ``rho``;
    the remaining change is then about ``delta * rho / (1 - rho)``. Needs three values (two increments).
    """
    if len(history) < 3:
        return math.inf
    d1, d2 = abs(history[-2] - history[-3]), abs(history[-1] - history[-2])
    if d2 == 0:
        return 0.0
    rho = d2 / d1 if d1 > 0 else math.inf
    if rho >= 1:
        return math.inf
    return d2 * max(1.0, rho / (1 - rho))


def _gap_error(r: float, theta: np.ndarray, i: int) -> float:
    """``min(r, r^2 / gap)``: the a-posteriori eigenvalue error estimate of a Ritz pair with residual ``r``."""
    others = np.delete(theta, i)
    if others.size == 0:
        return r
    gap = float(np.min(np.abs(others - theta[i])))
    return min(r, r * r / gap) if gap > 0 else r


def power_iteration(op: CurvatureOperator, *, tol: float = 1e-3, max_iter: int = 100,
                    v0: torch.Tensor | None = None, generator: torch.Generator | None = None) -> EigenResult:
    """Largest-magnitude eigenpair by power iteration (PyHessian's stopping rule).

    Stops when ``|theta_t - theta_{t-1}| / |theta_{t-1}| < tol`` (PyHessian's
    default ``tol=1e-3``, ``max_iter=100``). The reported residual
    ``||A v - theta v|| / |theta|`` says how converged it really is.
    """
    start = op.matvecs
    v = _random_unit(op, generator) if v0 is None else torch.as_tensor(v0).to(op.device, op.dtype).reshape(-1)
    v = v / v.norm()
    theta_prev = None
    history: list[float] = []
    converged = False
    w = op.matvec(v)
    theta = float(torch.dot(v, w))
    for it in range(1, max_iter + 1):
        history.append(theta)
        if theta_prev is not None and abs(theta - theta_prev) / max(abs(theta_prev), 1e-300) < tol:
            converged = True
            break
        theta_prev = theta
        nrm = w.norm()
        if nrm == 0:
            break
        v = w / nrm
        w = op.matvec(v)
        theta = float(torch.dot(v, w))
    residual = float((w - theta * v).norm()) / max(abs(theta), 1e-300)
    return EigenResult(torch.tensor([theta], dtype=torch.float64), v[:, None], [residual], op.matvecs - start,
                       len(history), converged, method="power", history=history)


def is_close(a: float, b: float, rtol: float) -> bool:
    """``|a - b| <= rtol * |b|`` (helper for tests and benchmarks)."""
    return math.isfinite(a) and abs(a - b) <= rtol * abs(b)
