"""Edge-of-stability statistics of a tracked run (Cohen et al. 2021).

Given the sharpness measurements of a run (``metrics.jsonl`` records with
``sharpness`` and ``stability_threshold``), :func:`edge_of_stability_summary`
answers: did sharpness rise to within ``band`` of the threshold, when, and did
it stay in ``[1 - band, 1 + band] x threshold`` afterwards?
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def tracked_series(records: list[dict[str, Any]], *keys: str) -> dict[str, np.ndarray]:
    """Arrays of ``step`` and the given keys over the records that hold all of them."""
    rows = [r for r in records if all(k in r and r[k] is not None for k in keys)]
    out = {"step": np.array([r["step"] for r in rows], dtype=np.int64)}
    for k in keys:
        out[k] = np.array([r[k] for r in rows], dtype=np.float64)
    return out


def edge_of_stability_summary(records: list[dict[str, Any]], band: float = 0.1,
                              key: str = "sharpness", threshold_key: str = "stability_threshold") -> dict[str, Any]:
    """When sharpness first reached ``(1 - band) x threshold``, and how it behaved afterwards.

    Returns ``reached_step`` (``None`` if never), ``initial_ratio``, ``max_ratio``,
    ``final_ratio`` (sharpness / threshold), ``ratio_after_mean`` and
    ``ratio_after_min/max`` over the measurements from the reaching one on, and
    ``fraction_in_band_after``: the share of those within ``1 +- band``.
    """
    s = tracked_series(records, key, threshold_key)
    if s["step"].size == 0:
        raise ValueError(f"no records with {key!r} and {threshold_key!r}")
    ratio = s[key] / s[threshold_key]
    hit = np.nonzero(ratio >= 1 - band)[0]
    out: dict[str, Any] = {"measurements": int(ratio.size), "initial_ratio": float(ratio[0]),
                           "max_ratio": float(ratio.max()), "final_ratio": float(ratio[-1]), "reached_step": None,
                           "fraction_in_band_after": math.nan, "ratio_after_mean": math.nan,
                           "ratio_after_min": math.nan, "ratio_after_max": math.nan}
    if hit.size:
        i = int(hit[0])
        after = ratio[i:]
        out.update(reached_step=int(s["step"][i]), fraction_in_band_after=float(np.mean(np.abs(after - 1) <= band)),
                   ratio_after_mean=float(after.mean()), ratio_after_min=float(after.min()),
                   ratio_after_max=float(after.max()))
    return out


def correlation(a, b) -> dict[str, float]:
    """Pearson and Spearman correlation of two series (``nan`` with fewer than 3 points or no spread)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 3 or a.std() == 0 or b.std() == 0:
        return {"pearson": math.nan, "spearman": math.nan, "points": int(a.size)}
    from scipy.stats import pearsonr, spearmanr

    return {"pearson": float(pearsonr(a, b).statistic), "spearman": float(spearmanr(a, b).statistic),
            "points": int(a.size)}
