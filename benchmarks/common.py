"""Shared helpers: timing by best-of-k, and recording results with the machine and date."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def best_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Best wall time of ``repeats`` calls after ``warmup`` (robust to a noisy shared machine)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def machine() -> dict:
    """Where the figures were taken."""
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def record(name: str, figures: dict, targets: dict) -> dict:
    """Write ``results/NAME.json`` with machine, date, figures and whether each target was met."""
    RESULTS.mkdir(exist_ok=True)
    data = {"benchmark": name, "machine": machine(), "figures": figures, "targets": targets}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    return data
