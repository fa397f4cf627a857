"""Compression bounds (issue targets): certified error bounds and their end-to-end wall time on 2 CPU cores.

Runs ``genlab reproduce compression`` in its full setting from scratch: every row is one ``genlab bound`` pipeline
(subspace training, quantization, coding, certificate) followed by ``genlab verify`` from the certificate and
message alone; each row's bound, parts and time split are recorded. Targets: MNIST and Fashion-MNIST (all 60,000
training points, data-independent) at most 6% and 20%, each within 30 minutes end to end; data-dependent MNIST
at most 2% (the experiment's ``TARGETS``; the run recorded 2026-11-30 was judged against the first round's 25%
and 3%); MNIST-1D and digits non-vacuous (well under the 90% of guessing) within 3 minutes each; every bound
verifies. The published data-independent figures (Lotfi et al. 2022: MNIST 11.6%, Fashion-MNIST 32.8%) are
recorded next to ours. ``GENLAB_COMPRESSION_OUT=DIR`` keeps the reproduction (runs, certificates, figure) in DIR.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks.common import record
from genlab.experiments.compression import PUBLISHED, SETTINGS, TARGETS, reproduce

LIMITS_S = {"mnist": 1800, "fashion-mnist": 1800, "mnist1d": 180, "digits": 180}


def main() -> dict:
    keep = os.environ.get("GENLAB_COMPRESSION_OUT")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(keep) if keep else Path(tmp) / "compression"
        if keep and out.exists() and any(out.iterdir()):
            raise SystemExit(f"{out} is not empty: the benchmark times runs from scratch")
        result = reproduce(out, quick=False, quiet=True)
    rows = result.details["rows"]
    figures, targets = {"verdict": result.verdict, "wall_time_s": result.details["wall_time_s"]}, {}
    for name, _ in SETTINGS["full"].rows:
        r = rows[name]
        wall = r["time_s"]["total"]
        figures[name] = {**{k: r[k] for k in ("dataset", "model", "projection", "d", "levels", "prior_split", "n",
                                                "train_error", "test_error", "message_bits", "hyperparameter_bits",
                                                "bound", "verified")},
                         "time_split_s": r["time_s"], "published_bound": PUBLISHED.get(name)}
        targets[f"{name}: bound verifies"] = r["verified"]
        if name in TARGETS:
            targets[f"{name}: bound {100 * r['bound']:.2f}% <= {100 * TARGETS[name]:g}%"] = r["bound"] <= TARGETS[name]
        else:
            targets[f"{name}: non-vacuous ({100 * r['bound']:.1f}% < 90%)"] = r["bound"] < 0.9
        if name in LIMITS_S:
            targets[f"{name}: within {LIMITS_S[name] / 60:g} min end to end ({wall / 60:.1f} min)"] = \
                wall <= LIMITS_S[name]
    figures["sweep"] = {name: {k: rows[name][k] for k in ("d", "train_error", "message_bits", "bound")}
                        for name, _ in SETTINGS["full"].sweep}
    return record("compression_bounds", figures, targets)
