"""Noise covariances for SGLD, built from a batch of per-sample gradients without any ``d x d`` matrix.

Wang et al. (NeurIPS 2021), "Optimizing Information-theoretical Generalization Bounds via Anisotropic Noise
in SGLD": for ``W_t = W_{t-1} - lr g_t + N(0, Sigma_t)`` the mutual information between the sample and the
weights is bounded by a sum over steps of ``(lr^2 / 2) E[(g_t - mu_t)^T Sigma_t^-1 (g_t - mu_t)]``; at a fixed
trace budget the minimiser is ``Sigma proportional to C^1/2`` with ``C`` the gradient covariance.

With the ``B`` per-sample gradients of a batch as rows of ``G`` and ``Gc = G - mean``, the covariance estimate
is ``C = Gc^T Gc / B`` (rank at most ``B - 1``). Every shape here is scaled to the same total variance
``trace`` so shapes are comparable, and mixed with an isotropic floor so ``Sigma`` is invertible:

``Sigma = (1 - floor) * trace * S / tr(S) + floor * trace / d * I``

with ``S`` one of ``I`` (isotropic), ``diag(C)`` (diagonal), ``C`` (gradcov) or ``C^1/2`` (sqrt-gradcov). The
low-rank shapes are held as ``a I + V diag(s) V^T`` (``V`` the ``d x k`` eigenvectors of ``C`` from the
``B x B`` Gram matrix), so sampling, ``Sigma^-1`` products and traces cost ``O(d B)``.

Completion of the low-rank estimate (``complete=True``, the default). ``C`` itself has full rank; a batch sees
only its top ``k <= B - 1`` directions, and a gradient deviation's component outside them would be charged
against the small floor alone (measured: 400x the isotropic KL term on an MNIST-1D MLP). The share ``rho`` of
``tr C`` outside a ``k``-dimensional span is estimated by two-fold cross-fitting on the Gram matrix (the
component of one half's gradients outside the span of the other half's: no ``d x d`` matrix), and ``C`` is
completed as ``(1 - rho) V diag(lam) V^T + e I`` with ``e = rho tr(C) / (d - k)``: the top directions as
measured plus the unseen variance spread evenly over every direction (the seen ones included: a direction the
batch saw with little variance still carries its share of the unseen part, and charging it less would make a
noisy small sample eigenvalue expensive). ``C^1/2`` of that is
``V diag(sqrt((1 - rho) lam + e) - sqrt(e)) V^T + sqrt(e) I``. The halves span fewer directions than the full
batch, so ``rho`` errs high (towards isotropic). With ``rho = 0`` (``complete=False``) this is the plain
rank-``k`` estimate plus the floor. Measured (softmax and least-squares regression on digits, ``d = 650``,
exact ``C`` from all 1,437 gradients): from 64 gradients the completed ``C^1/2`` reaches 4.7x / 2.2x the optimal
KL term against 7.9x / 4.2x for isotropic noise, and 2,100x / 1,200x without completion
(``genlab reproduce sgld-noise``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SHAPES = ("isotropic", "diagonal", "gradcov", "sqrt-gradcov")


@dataclass
class NoiseCovariance:
    """``Sigma = diag(a) + V diag(s) V^T`` with ``a`` a scalar or a ``(d,)`` vector and ``V`` orthonormal (``d x k``).

    ``s`` may be negative as long as ``a + s > 0`` (the variance along each column of ``V``).

    A diagonal ``a`` is only used without a low-rank part (the diagonal shape), which keeps the inverse exact.
    """

    a: torch.Tensor                # () or (d,)
    V: torch.Tensor | None = None  # (d, k) orthonormal columns
    s: torch.Tensor | None = None  # (k,), a + s > 0

    def trace(self, d: int) -> float:
        """``tr(Sigma)`` for dimension ``d``."""
        base = float(self.a.sum()) if self.a.dim() == 1 else float(self.a) * d
        return base + (float(self.s.sum()) if self.s is not None else 0.0)

    def sample(self, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw of ``N(0, Sigma)`` (``(d,)``)."""
        dtype = self.a.dtype
        z = torch.randn(d, generator=generator, dtype=dtype).to(self.a.device)
        out = self.a.sqrt() * z
        if self.V is not None:  # Sigma^1/2 = sqrt(a) I + V (sqrt(a + s) - sqrt(a)) V^T
            out = out + self.V @ (((self.a + self.s).sqrt() - self.a.sqrt()) * (self.V.T @ z))
        return out

    def inv_quad(self, v: torch.Tensor) -> float:
        """``v^T Sigma^-1 v`` (Woodbury on the low-rank part: ``1/a - s / (a (a + s))`` along ``V``)."""
        if self.V is None:
            return float((v * v / self.a).sum())
        a = float(self.a)
        p = self.V.T @ v
        return float(v @ v) / a - float((p * p * self.s / (a * (a + self.s))).sum())

    def dense(self, d: int) -> torch.Tensor:
        """The ``d x d`` matrix (tests and tiny models only)."""
        S = torch.diag(self.a.expand(d) if self.a.dim() == 0 else self.a).clone()
        if self.V is not None:
            S = S + self.V @ torch.diag(self.s) @ self.V.T
        return S


def gram_eigen(G: torch.Tensor, tol: float = 1e-10, *, _gram: tuple | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs ``(lam, V)`` of ``C = Gc^T Gc / B`` from the ``B x B`` Gram matrix, zero modes dropped."""
    B = G.shape[0]
    Gc, K = _gram if _gram is not None else _centred_gram(G)
    lam, U = torch.linalg.eigh(K / B)
    keep = lam > tol * max(float(lam.max()), 1e-300)
    lam, U = lam[keep], U[:, keep]
    V = Gc.T @ (U / torch.sqrt(B * lam)).to(Gc.dtype)
    return lam.to(G.dtype), V.to(G.dtype)


def _centred_gram(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Gc, Gc Gc^T)``: the centred gradients and their Gram matrix (in float64: its small eigenvalues matter)."""
    Gc = G - G.mean(dim=0)
    return Gc, (Gc @ Gc.T).double()


def residual_share(G: torch.Tensor, *, _gram: tuple | None = None) -> float:
    """Estimated share of ``tr C`` outside the span of a batch's centred gradients (two-fold cross-fitting).

    Each half's centred gradients are projected onto the span of the other half's, through Gram-matrix blocks
    alone: ``||P_A x||^2 = k^T K_AA^+ k`` with ``k = G_A x``. Returns 0 for batches of fewer than 4 points.
    """
    B = G.shape[0]
    if B < 4:
        return 0.0
    K = (_gram if _gram is not None else _centred_gram(G))[1]
    folds = (torch.arange(0, B, 2), torch.arange(1, B, 2))
    shares = []
    for a, b in (folds, folds[::-1]):
        total = float(K.diagonal()[b].sum())
        if total <= 0:
            continue
        inside = float((K[a][:, b] * (torch.linalg.pinv(K[a][:, a], hermitian=True, rtol=1e-10)
                                      @ K[a][:, b])).sum())
        shares.append(min(max(1.0 - inside / total, 0.0), 1.0))
    return sum(shares) / len(shares) if shares else 0.0


def noise_covariance(shape: str, G: torch.Tensor, trace: float, floor: float = 1e-3,
                     complete: bool = True) -> NoiseCovariance:
    """The SGLD noise covariance of ``shape`` with total variance ``trace``, from per-sample gradients ``G`` (B x d).

    Args:
        shape: ``isotropic``, ``diagonal``, ``gradcov`` (``C``) or ``sqrt-gradcov`` (``C^1/2``).
        G: the batch's per-sample gradients, one row each.
        trace: ``tr(Sigma)``, the same for every shape.
        floor: the share of ``trace`` spread isotropically on top of the shape (``Sigma`` stays invertible;
            0 < floor <= 1).
        complete: complete the low-rank ``C`` with its estimated unseen variance (module docstring); without it
            the directions a batch does not span get the floor alone.
    """
    if shape not in SHAPES:
        raise ValueError(f"noise shape must be one of {', '.join(SHAPES)}, not {shape!r}")
    if not 0 < floor <= 1:
        raise ValueError(f"floor must be in (0, 1], not {floor}")
    if not trace > 0:
        raise ValueError(f"trace must be > 0, not {trace}")
    d = G.shape[1]
    iso = torch.tensor(trace / d, dtype=G.dtype, device=G.device)
    if shape == "isotropic":
        return NoiseCovariance(iso)
    if shape == "diagonal":
        c = (G - G.mean(dim=0)).pow(2).mean(dim=0)
        total = float(c.sum())
        if total <= 0:
            return NoiseCovariance(iso)
        return NoiseCovariance((1 - floor) * trace * c / total + floor * iso)
    gram = _centred_gram(G)
    lam, V = gram_eigen(G, _gram=gram)
    if lam.numel() == 0:
        return NoiseCovariance(iso)
    k = lam.numel()
    rho = residual_share(G, _gram=gram) if complete and d > k else 0.0
    rest = rho * float(lam.sum()) / (d - k) if d > k else 0.0  # completed C's variance per unseen direction
    top = (1 - rho) * lam + rest  # the unseen variance is in every direction, the seen ones included
    if shape == "gradcov":
        base, S = rest, top - rest
    else:
        base, S = rest ** 0.5, top.sqrt() - rest ** 0.5
    scale = (1 - floor) * trace / (base * d + float(S.sum()))
    a = torch.tensor(scale * base + floor * trace / d, dtype=G.dtype, device=G.device)
    return NoiseCovariance(a, V, scale * S)


def closed_form_kl_ratio(C: torch.Tensor) -> float:
    """``(tr C^1/2)^2 / (d tr C)``: the KL term of ``sqrt-gradcov`` over ``isotropic`` noise at equal trace.

    For gradient noise of covariance ``C``, ``E[(g - mu)^T Sigma^-1 (g - mu)] = tr(Sigma^-1 C)``: ``d tr C / t``
    for ``Sigma = t I / d`` and ``(tr C^1/2)^2 / t`` for ``Sigma = t C^1/2 / tr C^1/2`` (Wang et al., no floor).
    """
    lam = torch.linalg.eigvalsh(C.double()).clamp_min(0)
    return float(lam.sqrt().sum() ** 2 / (C.shape[0] * lam.sum()))


def expected_kl_term(cov: NoiseCovariance, C: torch.Tensor) -> float:
    """``tr(Sigma^-1 C)`` for an explicit ``C`` (tests and the closed-form comparison; ``d x d``)."""
    d = C.shape[0]
    return float(torch.trace(torch.linalg.solve(cov.dense(d).double(), C.double())))


__all__ = ["SHAPES", "NoiseCovariance", "noise_covariance", "gram_eigen", "residual_share", "closed_form_kl_ratio",
           "expected_kl_term"]
