"""PAC-Bayes and Occam bound arithmetic: the binary kl, its inverses, and the bounds built on them.

Every bound here maps (empirical error ``q`` in ``[0, 1]``, complexity, ``n``, ``delta``) to an upper bound on the
true error that holds with probability at least ``1 - delta`` over the draw of the ``n`` training points.
Complexity is a KL divergence in nats (PAC-Bayes) or a message length in bits (Occam: a point-mass posterior on
the hypothesis coded by the message, prior ``P(h) = 2^-bits``, so ``KL = bits * ln 2``).

- :func:`occam_bound` -- ``kl(q || L) <= (bits ln 2 + ln(1/delta)) / n``: Chernoff for one hypothesis plus a
  union bound over a prefix-free code (Langford 2005, Thm. 4.1). The tightest for a point mass.
- :func:`kl_bound` -- Langford-Seeger / Maurer: ``kl(q || L) <= (KL + ln(2 sqrt(n) / delta)) / n``.
- :func:`mcallester_bound` -- its Pinsker relaxation ``q + sqrt((KL + ln(2 sqrt(n) / delta)) / (2n))``.
- :func:`catoni_bound` -- Catoni's bound for a fixed ``gamma > 0``; :func:`catoni_grid_bound` takes the best
  ``gamma`` of a declared grid and pays for it with a union bound (``delta / len(grid)``).

Inverses are found by bisection to ``1e-12`` and rounded *outwards* (an upper inverse is never below the exact
one), so a reported bound is never optimistic because of the arithmetic.
"""

from __future__ import annotations

import math
from typing import Sequence

from genlab.errors import GenlabError

TOLERANCE = 1e-12


class BoundError(GenlabError, ValueError):
    """A bound was asked for with input outside its domain."""


def _check_unit(name: str, value: float) -> float:
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise BoundError(f"{name} must lie in [0, 1], got {value}")
    return value


def _check_common(error: float, complexity: float, n: int, delta: float, complexity_name: str) -> float:
    q = _check_unit("empirical error", error)
    if not (isinstance(complexity, (int, float)) and complexity >= 0 and not math.isnan(complexity)):
        raise BoundError(f"{complexity_name} must be a number >= 0, got {complexity!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise BoundError(f"n must be an integer >= 1, got {n!r}")
    if not (isinstance(delta, (int, float)) and 0.0 < delta < 1.0):
        raise BoundError(f"delta must lie in (0, 1), got {delta!r}")
    return q


def kl_bernoulli(q: float, p: float) -> float:
    """Binary KL divergence ``kl(q || p) = q ln(q/p) + (1-q) ln((1-q)/(1-p))`` (``0 ln 0 = 0``; ``inf`` off support)."""
    q = _check_unit("q", q)
    p = _check_unit("p", p)
    total = 0.0
    for a, b in ((q, p), (1.0 - q, 1.0 - p)):
        if a > 0.0:
            if b <= 0.0:
                return math.inf
            total += a * math.log(a / b)
    return max(total, 0.0)


def kl_inverse_upper(q: float, c: float, tol: float = TOLERANCE) -> float:
    """The largest ``p >= q`` with ``kl(q || p) <= c``, by bisection to ``tol`` (returns the upper end)."""
    q = _check_unit("q", q)
    if not c >= 0:
        raise BoundError(f"the kl budget must be >= 0, got {c}")
    if q >= 1.0 or kl_bernoulli(q, 1.0) <= c:
        return 1.0
    return _bisect(q, c, inside=q, outside=1.0, tol=tol)


def kl_inverse_lower(q: float, c: float, tol: float = TOLERANCE) -> float:
    """The smallest ``p <= q`` with ``kl(q || p) <= c``, by bisection to ``tol`` (returns the lower end)."""
    q = _check_unit("q", q)
    if not c >= 0:
        raise BoundError(f"the kl budget must be >= 0, got {c}")
    if q <= 0.0 or kl_bernoulli(q, 0.0) <= c:
        return 0.0
    return _bisect(q, c, inside=q, outside=0.0, tol=tol)


def _bisect(q: float, c: float, inside: float, outside: float, tol: float) -> float:
    """The point between ``inside`` (``kl <= c``) and ``outside`` (``kl > c``) where ``kl(q || p) = c``, returned
    on the outside of the final bracket (never optimistic)."""
    while abs(outside - inside) > tol:
        mid = 0.5 * (inside + outside)
        if kl_bernoulli(q, mid) > c:
            outside = mid
        else:
            inside = mid
    return outside


def occam_bound(error: float, bits: float, n: int, delta: float) -> float:
    """Occam kl bound for a point mass coded in ``bits``: ``kl(q || L) <= (bits ln 2 + ln(1/delta)) / n``.

    Valid when ``2^-bits`` is a prior, i.e. the code is prefix-free (Kraft). Example (the issue's check value):
    ``occam_bound(0.02, 3000, 60000, 0.05) = 0.080634...``.
    """
    q = _check_common(error, bits, n, delta, "bits")
    return kl_inverse_upper(q, (bits * math.log(2) + math.log(1 / delta)) / n)


def kl_bound(error: float, kl: float, n: int, delta: float) -> float:
    """Langford-Seeger / Maurer PAC-Bayes-kl bound: ``kl(q || L) <= (KL + ln(2 sqrt(n) / delta)) / n``."""
    q = _check_common(error, kl, n, delta, "KL")
    return kl_inverse_upper(q, (kl + math.log(2 * math.sqrt(n) / delta)) / n)


def mcallester_bound(error: float, kl: float, n: int, delta: float) -> float:
    """McAllester's bound (Maurer's constant): ``q + sqrt((KL + ln(2 sqrt(n) / delta)) / (2n))``, capped at 1."""
    q = _check_common(error, kl, n, delta, "KL")
    return min(1.0, q + math.sqrt((kl + math.log(2 * math.sqrt(n) / delta)) / (2 * n)))


def catoni_bound(error: float, kl: float, n: int, delta: float, gamma: float) -> float:
    """Catoni's bound for one ``gamma > 0`` fixed before seeing the data.

    ``L <= (1 - exp(-gamma q - (KL + ln(1/delta)) / n)) / (1 - exp(-gamma))``.
    """
    q = _check_common(error, kl, n, delta, "KL")
    if not (isinstance(gamma, (int, float)) and gamma > 0 and math.isfinite(gamma)):
        raise BoundError(f"gamma must be a finite number > 0, got {gamma!r}")
    value = -math.expm1(-gamma * q - (kl + math.log(1 / delta)) / n) / -math.expm1(-gamma)
    return min(1.0, value)


def geometric_grid(low: float, high: float, count: int) -> list[float]:
    """``count`` values from ``low`` to ``high`` spaced evenly on a log scale (a declared Catoni grid)."""
    if not (0 < low <= high) or count < 1:
        raise BoundError(f"a geometric grid needs 0 < low <= high and count >= 1, got {low}, {high}, {count}")
    if count == 1:
        return [float(low)]
    ratio = (high / low) ** (1 / (count - 1))
    return [low * ratio ** i for i in range(count)]


DEFAULT_CATONI_GRID = geometric_grid(0.1, 100.0, 64)


def catoni_grid_bound(error: float, kl: float, n: int, delta: float,
                      gammas: Sequence[float] = DEFAULT_CATONI_GRID) -> tuple[float, float]:
    """Catoni's bound at the best ``gamma`` of a grid declared in advance, union bound over the grid.

    Each ``gamma`` gets ``delta / len(gammas)``. Returns ``(bound, gamma)``.
    """
    gammas = list(gammas)
    if not gammas:
        raise BoundError("the Catoni grid is empty")
    share = delta / len(gammas)
    return min((catoni_bound(error, kl, n, share, g), g) for g in gammas)


def all_bounds(error: float, bits: float, n: int, delta: float) -> dict[str, float]:
    """Every bound of this module for a point mass coded in ``bits``, by name (each at the full ``delta``)."""
    kl = bits * math.log(2)
    catoni, gamma = catoni_grid_bound(error, kl, n, delta)
    return {
        "occam_kl": occam_bound(error, bits, n, delta),
        "langford_seeger": kl_bound(error, kl, n, delta),
        "mcallester": mcallester_bound(error, kl, n, delta),
        "catoni_grid": catoni,
        "catoni_gamma": gamma,
    }
