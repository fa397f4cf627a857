"""Non-vacuous information-theoretic bounds for Langevin dynamics (issue 17): Haghifam et al.'s CMI bound.

Full-batch Langevin dynamics (``genlab train --optimizer gld --sgld-bound cmi``) on 59,000 training images
(the other 1,000 of the training split supply the pair's second member and nothing else), an MLP with one
hidden layer of 100 units, lr 0.15, 800 steps, isotropic noise of trace 1 per step. (The first recorded run,
50,000 images, lr 0.2, 600 steps: MNIST 19.37% from the means, 27.75% at the upper limit; Fashion-MNIST
32.59% / 38.46%. The per-step term falls as lr^2 / n^2 at equal progress lr T.) One bound pair per run
(``m = n - 1``, the papers' choice: the pairs' gradient differences add coherently, so more pairs per run
raise ``I / k``), and each seed draws its own pair, ghost, selector and noise; the bound on the expected test
error, ``E[train error] + sqrt(2 E[I] / 1)``, is estimated over the seeds
(:func:`genlab.bounds.infotheory.bound_over_seeds`), with the one-sided 95% Student-t upper limit as the
figure quoted against the target; the bound quoted is the sharpened one-pair form
(:func:`genlab.bounds.infotheory.pair_sign_bound`, never above the stated ``E[train error] + sqrt(2 E[I])``,
which is recorded beside it). Targets: MNIST at most 20% with at least 95% training accuracy,
Fashion-MNIST at most 30%, each bound at or above the test error measured on the same runs; the accounting at
most 1.5x a step without it (same run, steps timed with ``--sgld-bound off`` and ``cmi``, interleaved).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import record
from genlab.bounds.infotheory import bound_over_seeds
from genlab.config import TrainConfig
from genlab.train import train

SEEDS = 8
COMMON = dict(n_train=59000, model="mlp", width=100, depth=1, optimizer="gld", lr=0.15, epochs=800,
              sgld_noise="isotropic", noise_trace=1.0, eval_every=800, checkpoint_every=800)
TARGETS = {"mnist": 0.20, "fashion-mnist": 0.30}


def _dataset_row(name: str, root: Path) -> dict:
    runs = []
    for seed in range(SEEDS):
        cfg = TrainConfig(dataset=name, seed=seed, sgld_bound="cmi", **COMMON)
        s = train(cfg, root / f"{name}-{seed}", quiet=True).summary
        runs.append({"seed": seed, "information": s["sgld_information"], "train_error": s["sgld_bound_train_error"],
                     "test_error": 1 - s["test_accuracy"], "train_accuracy": s["train_accuracy"],
                     "pair_member_error": s["sgld_pair_member_error"], "pair_ghost_error": s["sgld_pair_ghost_error"],
                     "wall_time_s": s["wall_time_s"]})
    return _aggregate(runs)


def _aggregate(runs: list[dict]) -> dict:
    """The bounds over the seeds' runs: a function of each run's KL sum and training error only."""
    agg = bound_over_seeds([r["information"] for r in runs], [r["train_error"] for r in runs], points=1,
                           single_pair=True)
    test = sum(r["test_error"] for r in runs) / len(runs)
    return {"runs": runs, **agg, "test_error_mean": test,
            "train_accuracy_min": min(r["train_accuracy"] for r in runs)}


def _overhead(root: Path) -> dict:
    """Wall time of 60 steps with and without the CMI accounting (same data, model, noise), best of 3."""
    times = {"off": [], "cmi": []}
    for rep in range(3):
        for mode in ("off", "cmi"):
            cfg = TrainConfig(dataset="mnist", seed=0, sgld_bound=mode,
                              **{**COMMON, "epochs": 60, "eval_every": 60, "checkpoint_every": 60})
            t0 = time.perf_counter()
            train(cfg, root / f"overhead-{mode}-{rep}", quiet=True)
            times[mode].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    return {"run_time_s": best, "ratio": best["cmi"] / best["off"]}


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = {name: _dataset_row(name, root) for name in TARGETS}
        overhead = _overhead(root)
    figures = {"settings": {**COMMON, "sgld_bound": "cmi", "bound_pairs": 1, "seeds": SEEDS}, "datasets": rows,
               "overhead": overhead}
    return record("sgld_cmi_bounds", figures, _targets(rows, overhead))


def recompute() -> dict:
    """The bounds recomputed from the recorded runs (``--recompute``): for a new bound that is a function of
    what each run measured (its KL sum and training error), without retraining the 16 runs (about 25 minutes
    on a fast 2-core machine, over an hour on a slow one). The runs, their settings and the overhead timing are
    the recorded ones, and ``recomputed_from`` says when those were taken."""
    import json

    from benchmarks.common import RESULTS

    old = json.loads((RESULTS / "sgld_cmi_bounds.json").read_text())
    figures = old["figures"]
    rows = {name: _aggregate(figures["datasets"][name]["runs"]) for name in TARGETS}
    figures = {**figures, "datasets": rows,
               "recomputed_from": old.get("recomputed_from") or {"machine": old["machine"]}}
    return record("sgld_cmi_bounds", figures, _targets(rows, figures["overhead"]))


def _targets(rows: dict, overhead: dict) -> dict:
    targets = {}
    for name, limit in TARGETS.items():
        r = rows[name]
        targets[f"{name}: bound on the expected test error <= {100 * limit:.0f}% (sharpened one-pair bound "
                 f"{100 * r['test_error_bound_sharp_upper']:.2f}% at 95%, {100 * r['test_error_bound_sharp']:.2f}% "
                 f"from the means; the stated form {100 * r['test_error_bound_upper']:.2f}% / "
                 f"{100 * r['test_error_bound']:.2f}%; {SEEDS} seeds)"] = r["test_error_bound_sharp_upper"] <= limit
        targets[f"{name}: bound at or above the measured test error ({100 * r['test_error_bound_sharp']:.2f}% >= "
                 f"{100 * r['test_error_mean']:.2f}%)"] = r["test_error_bound_sharp"] >= r["test_error_mean"]
    m = rows["mnist"]
    targets[f"mnist: at least 95% training accuracy on every run (lowest {100 * m['train_accuracy_min']:.2f}%)"] = \
        m["train_accuracy_min"] >= 0.95
    targets[f"CMI accounting <= 1.5x a Langevin step without it (measured {overhead['ratio']:.2f}x)"] = \
        overhead["ratio"] <= 1.5
    return targets


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(recompute() if "--recompute" in sys.argv[1:] else main(), indent=1))
