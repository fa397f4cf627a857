"""Information-theoretic generalization bounds (Xu & Raginsky 2017; the SGLD trajectory form of Wang et al. 2021).

For an ``R``-sub-Gaussian loss, ``|E[gen(S, W)]| <= sqrt(2 R^2 I(S; W) / n)``. For SGLD the mutual
information is bounded by the sum of per-step KL terms that :class:`genlab.optim.SGLD` accounts.
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


def bound_over_seeds(informations, train_errors, points: int, subgaussian: float = 1.0,
                     confidence: float = 0.95) -> dict:
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
    return {"seeds": s, "confidence": confidence, "information_mean": i_mean, "information_upper": i_up,
            "gap_bound": gap, "gap_bound_upper": gap_up, "train_error_mean": e_mean, "train_error_upper": e_up,
            "test_error_bound": e_mean + gap,
            "test_error_bound_upper": None if gap_up is None else min(e_up, 1.0) + gap_up}
