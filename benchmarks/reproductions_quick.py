"""Wall time of every ``genlab reproduce NAME --quick`` (target: within 5 minutes each on 2 CPU cores).

Each runs from scratch into a temporary directory, as ``genlab reproduce NAME --quick`` would, and its verdict
is recorded with the time (the verdicts themselves are the reproductions' business, not a target here).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import record
from genlab.experiments import REPRODUCTIONS, reproduce

LIMIT_S = 300.0


def main() -> dict:
    times, verdicts = {}, {}
    for name in REPRODUCTIONS:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = reproduce(name, Path(tmp) / name, quick=True, quiet=True)
            times[name] = time.perf_counter() - t0
            verdicts[name] = result.verdict
    targets = {f"genlab reproduce {name} --quick within {LIMIT_S:.0f} s (measured {t:.0f} s)": t <= LIMIT_S
               for name, t in times.items()}
    return record("reproductions_quick", {"wall_time_s": times, "verdicts": verdicts}, targets)
