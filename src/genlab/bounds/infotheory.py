"""Information-theoretic generalization bounds (Xu & Raginsky 2017; the SGLD trajectory form of Wang et al. 2021).

For an ``R``-sub-Gaussian loss, ``|E[gen(S, W)]| <= sqrt(2 R^2 I(S; W) / n)``. For SGLD the mutual
information is bounded by the sum of per-step KL terms that :class:`genlab.optim.SGLD` accounts.
:func:`pair_sign_bound` sharpens the conditional-mutual-information bound of one super-sample pair under the
0-1 loss (the papers' setting for Langevin dynamics) by how rarely the pair's two losses differ.
"""

from __future__ import annotations

import math


def information_bound(info: float, n: int, subgaussian: float = 1.0) -> float:
    """``sqrt(2 R^2 I / n)``: the expected generalization-gap bound from the mutual-information estimate ``I``.

    ``R`` is the sub-Gaussian parameter of the loss (a loss in ``[0, 1]`` is ``1/2``-sub-Gaussian).
    """
    if info < 0 or n < 1 or subgaussian <= 0:
        raise ValueError("need info >= 0, n >= 1 and subgaussian > 0")
    return math.sqrt(2 * subgaussian ** 2 * info / n)


def _log_mgf(lam: float, p: float) -> float:
    """``log(1 - p + p cosh(lam))`` without overflow."""
    terms = [math.log(p / 2) + lam, math.log(p / 2) - lam] if p > 0 else []
    if p < 1:
        terms.append(math.log1p(-p))
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def sign_gap_bound(info: float, p: float) -> float:
    """``inf_{lam > 0} (I + log(1 - p + p cosh lam)) / lam``: the bound on ``E[s * D]`` for a fair sign ``s``
    (the selector) and ``D`` in ``{-1, 0, 1}`` that is non-zero with probability ``p``, from ``I(W; U) <= info``.

    Any ``lam`` gives a valid bound, so the numerical minimiser can only loosen it, never invalidate it; the
    objective is unimodal in ``lam`` (``lam * phi' - phi - I`` increases, ``phi`` being a convex log-MGF).
    At ``p = 1`` it is at most ``sqrt(2 I)`` (``log cosh lam <= lam^2 / 2``): Steinke and Zakynthinou's form.
    """
    from scipy.optimize import minimize_scalar

    if info < 0 or not 0 <= p <= 1:
        raise ValueError(f"need info >= 0 and p in [0, 1] (got {info}, {p})")
    if p == 0 or info == 0:
        return 0.0
    f = lambda lam: (info + _log_mgf(lam, p)) / lam  # noqa: E731
    guess = math.sqrt(2 * info / p)  # the optimum of the quadratic approximation
    grid = [guess * 2.0 ** j for j in range(-12, 13)]
    best = min(grid, key=f)
    res = minimize_scalar(f, bounds=(best / 2, best * 2), method="bounded", options={"xatol": best * 1e-9})
    return float(min(f(best), res.fun))


def pair_sign_bound(info: float, train_error: float, tol: float = 1e-9) -> float:
    """The bound on the expected test error ``T`` from one super-sample pair's CMI under the 0-1 loss.

    Setting (Haghifam et al. 2020, one bound pair): the pair ``(Z_0, Z_1)`` and a fair selector ``U``; the
    member ``Z_U`` trains, the ghost ``Z_{1-U}`` does not, ``I`` bounds ``E_Z~ I(W; U | Z~)`` (the accounted KL
    sum, averaged over runs). With ``D = l(W, Z_1) - l(W, Z_0)`` in ``{-1, 0, 1}`` the gap on the pair is
    ``s D`` with ``s = +-1`` from ``U``. Donsker-Varadhan given ``Z~``, against the product of ``W``'s and ``U``'s
    marginals (under which ``s`` is a fair sign independent of ``D``, so ``E e^{lam s D} = 1 - p + p cosh lam``
    exactly, ``p = P(D != 0 | Z~)``), then Jensen over ``Z~`` (the log-MGF is concave in ``p``):
    ``E[gap] <= (I + log(1 - p + p cosh lam)) / lam`` for every ``lam > 0``, ``p = P(D != 0)``. For 0-1 losses
    ``P(D != 0) <= E[l(W, Z_0) + l(W, Z_1)] = R + T`` (member plus ghost error; the member's equals the
    expected training error ``R`` because the algorithm treats its training points exchangeably, the ghost's
    is the test error because the ghost is a fresh draw). So ``T`` satisfies
    ``T - R <= B(min(1, R + T))`` with ``B(p)`` = :func:`sign_gap_bound`, and the bound is the largest such ``T``:
    ``T - R - B(R + T)`` is convex in ``T`` (``B`` is concave and non-decreasing in ``p``) and ``<= 0`` at
    ``T = R``, so bisection finds it; the returned value is the bisection's upper end, where the condition
    fails, so it is never below the exact root.

    Never above ``R + sqrt(2 I)`` (the stated bound); for an interpolating learner (``R = 0``) it is about
    ``2 I``, a fast rate. Depends only on ``(I, R)`` and increases in both, so upper confidence limits of the
    two give an upper limit of the bound.
    """
    if info < 0 or not 0 <= train_error <= 1:
        raise ValueError(f"need info >= 0 and train_error in [0, 1] (got {info}, {train_error})")
    r = train_error

    def fails(t: float) -> bool:
        return t - r > sign_gap_bound(info, min(1.0, r + t))

    if not fails(1.0):
        return 1.0
    lo, hi = r, 1.0
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if fails(mid):
            hi = mid
        else:
            lo = mid
    return hi


def bound_over_seeds(informations, train_errors, points: int, subgaussian: float = 1.0,
                     confidence: float = 0.95, single_pair: bool = False) -> dict:
    """The bound on the expected test error, its expectation over the algorithm's randomness estimated from
    several runs (seeds), with that estimate's uncertainty.

    Each run ``r`` accounts ``I_r`` (the KL sum along its trajectory; for the CMI bound the run also draws its
    own super-sample and selector) and measures its training error ``e_r``. The theorems bound the expected gap
    by ``sqrt(2 R^2 E[I] / points)`` with ``E[I]`` over everything random; ``mean(I_r)`` estimates it without
    bias, and the square root of the mean is the valid order (Jensen: ``E sqrt(X) <= sqrt(E X)``).

    Returns ``seeds``, ``information_mean``, ``information_upper`` (one-sided Student-t upper confidence limit
    of ``E[I]`` at ``confidence``), ``gap_bound`` and ``gap_bound_upper`` (from the mean and from the upper
    limit), ``train_error_mean``/``train_error_upper`` likewise, ``test_error_bound`` (mean train error plus
    ``gap_bound``) and ``test_error_bound_upper`` (both upper limits; the figure to quote with ``confidence``).
    With one run the upper limits are ``None``. The limits describe the Monte Carlo estimate of an expectation;
    they are not a high-probability bound over the training sample.

    ``single_pair=True`` (the CMI bound with one bound pair and the 0-1 loss) adds ``test_error_bound_sharp``
    and ``test_error_bound_sharp_upper``: :func:`pair_sign_bound` at the means and at the upper limits.
    """
    import numpy as np
    from scipy import stats

    info = np.asarray(list(informations), dtype=float)
    err = np.asarray(list(train_errors), dtype=float)
    if info.ndim != 1 or len(info) < 1 or err.shape != info.shape:
        raise ValueError("need one information figure and one training error per run (the same number, >= 1)")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1) (got {confidence})")
    s = len(info)

    def upper(values):
        if s < 2:
            return None
        return float(values.mean() + stats.t.ppf(confidence, s - 1) * values.std(ddof=1) / math.sqrt(s))

    i_mean, i_up = float(info.mean()), upper(info)
    e_mean, e_up = float(err.mean()), upper(err)
    gap = information_bound(i_mean, points, subgaussian)
    gap_up = None if i_up is None else information_bound(max(i_up, 0.0), points, subgaussian)
    out = {"seeds": s, "confidence": confidence, "information_mean": i_mean, "information_upper": i_up,
           "gap_bound": gap, "gap_bound_upper": gap_up, "train_error_mean": e_mean, "train_error_upper": e_up,
           "test_error_bound": e_mean + gap,
           "test_error_bound_upper": None if gap_up is None else min(e_up, 1.0) + gap_up}
    if single_pair:
        if points != 1 or subgaussian != 1.0:
            raise ValueError("single_pair: the sharpened bound is for one CMI bound pair (points=1, subgaussian=1)")
        out["test_error_bound_sharp"] = pair_sign_bound(i_mean, min(max(e_mean, 0.0), 1.0))
        out["test_error_bound_sharp_upper"] = (None if i_up is None else
                                               pair_sign_bound(max(i_up, 0.0), min(max(e_up, 0.0), 1.0)))
    return out
