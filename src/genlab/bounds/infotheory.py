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
