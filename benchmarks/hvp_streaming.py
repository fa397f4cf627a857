"""Full-batch Hessian-vector products streamed over a DataLoader: memory flat in the dataset size, no slower
than the in-memory path.

Setting: LeNet-5 (61,706 parameters) on MNIST read from the official IDX files, float32, CPU, batches of
1,000. The loader is a plain ``torch.utils.data.DataLoader`` over a dataset that keeps the images as uint8
(as image datasets do) and converts each one to float when it is read; the Objective streams it batch by
batch (``Objective(model, "ce", loader)``) and keeps one batch's graph at a time.

* ``memory``: the peak resident memory of the process during one HVP over the whole training set, sampled
  every millisecond by a thread, each size in a fresh process: 60,000 images against 10,000. Target: the
  60,000 figure within 10% of the 10,000 figure. Also recorded: the increment above the resident memory just
  before the HVP (one batch's graph and activations, plus what the allocator keeps from freed batches).
* ``time``: one full-batch HVP on 10,000 images through the loader against the same through the in-memory
  path (``Objective(model, "ce", (x, y))``, no cached graphs), best of 3 each. Target: the loader path
  <= 1.10x the in-memory one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import best_time, record

ROOT = Path(__file__).resolve().parents[1]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _images(n: int, dataset: str = "mnist"):
    import torch

    from genlab.data import load_dataset

    data = load_dataset(dataset, n_train=n)
    # back to uint8 pixels, as an image dataset keeps them; normalised per item when read
    mean, std = data.info["mean"], data.info["std"]
    pixels = ((data.x_train * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    labels = data.y_train
    del data
    return pixels, labels, mean, std


class UInt8Images:
    """A map-style dataset over uint8 images: item i is (float image normalised, label)."""

    def __init__(self, pixels, labels, mean, std):
        self.pixels, self.labels, self.mean, self.std = pixels, labels, mean, std

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return (self.pixels[i].float() / 255 - self.mean) / self.std, self.labels[i]


def _model():
    import torch

    from genlab.models import build_model

    torch.manual_seed(0)
    return build_model("lenet5", (1, 28, 28), 10)


def peak_rss_during(fn) -> tuple[int, float, object]:
    """``(peak resident bytes, seconds, result)`` of ``fn()``, the RSS sampled every millisecond by a thread."""
    peak, stop = [_rss()], [False]

    def sample():
        while not stop[0]:
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        stop[0] = True
        thread.join()
    return peak[0], time.perf_counter() - t0, out


def measure_memory(n: int) -> dict:
    """In this process: peak RSS increment of one streamed full-batch HVP over n images."""
    import torch
    from torch.utils.data import DataLoader

    from genlab.objective import Objective

    pixels, labels, mean, std = _images(n)
    model = _model()
    loader = DataLoader(UInt8Images(pixels, labels, mean, std), batch_size=1000)
    obj = Objective(model, "ce", loader)
    v = {k: torch.randn_like(p) for k, p in obj.params().items()}
    obj.hvp(v)  # warm-up: allocator pools, kernels
    before = _rss()
    peak, seconds, _ = peak_rss_during(lambda: obj.hvp(v))
    return {"n": n, "rss_before_mb": before / 2**20, "peak_mb": peak / 2**20,
            "hvp_increment_mb": (peak - before) / 2**20, "hvp_s": seconds}


def measure_time(n: int = 10_000) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from genlab.objective import Objective

    pixels, labels, mean, std = _images(n)
    model = _model()
    dataset = UInt8Images(pixels, labels, mean, std)
    x = torch.stack([dataset[i][0] for i in range(n)])
    in_memory = Objective(model, "ce", (x, labels), batch_size=1000)
    streamed = Objective(model, "ce", DataLoader(dataset, batch_size=1000))
    v = {k: torch.randn_like(p) for k, p in in_memory.params().items()}
    a, b = in_memory.hvp(v), streamed.hvp(v)
    rel = max(float((a[k] - b[k]).abs().max() / (a[k].abs().max() + 1e-30)) for k in a)
    t_mem = best_time(lambda: in_memory.hvp(v), repeats=3)
    t_loader = best_time(lambda: streamed.hvp(v), repeats=3)
    return {"n": n, "in_memory_hvp_s": t_mem, "loader_hvp_s": t_loader, "loader_over_in_memory": t_loader / t_mem,
            "max_rel_diff": rel}


def _in_fresh_process(n: int) -> dict:
    code = f"import json; from benchmarks.hvp_streaming import measure_memory; print(json.dumps(measure_memory({n})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> dict:
    small, large = _in_fresh_process(10_000), _in_fresh_process(60_000)
    timing = measure_time()
    ratio = large["peak_mb"] / small["peak_mb"]
    increment_ratio = large["hvp_increment_mb"] / small["hvp_increment_mb"]
    targets = {
        "peak memory of a streamed HVP at 60,000 images within 10% of it at 10,000": ratio <= 1.10,
        "loader HVP <= 1.10x the in-memory HVP (10,000 images)": timing["loader_over_in_memory"] <= 1.10,
        "loader and in-memory HVPs agree (max rel diff < 1e-5)": timing["max_rel_diff"] < 1e-5,
    }
    print(f"HVP peak memory: 10k {small['peak_mb']:.0f} MB, 60k {large['peak_mb']:.0f} MB (ratio {ratio:.3f}); "
          f"increment 10k {small['hvp_increment_mb']:.1f} MB, 60k {large['hvp_increment_mb']:.1f} MB (ratio "
          f"{increment_ratio:.3f}); loader/in-memory time {timing['loader_over_in_memory']:.3f}")
    return record("hvp_streaming", {"memory_10k": small, "memory_60k": large, "peak_ratio_60k_over_10k": ratio,
                                    "increment_ratio_60k_over_10k": increment_ratio, "time": timing}, targets)


if __name__ == "__main__":
    main()
