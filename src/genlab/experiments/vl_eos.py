"""``genlab reproduce vl-eos``: variational learning settles at a flatter edge of stability.

Claim (Ghosh, Cong, Yokota, Ravishankar, Wang, Tao, Khan, Mollenhoff, NeurIPS 2025; IVON: Shen et al. 2024):
under full-batch variational GD ``m <- m - lr mean_s grad l(m + eps_s)``, ``eps_s ~ N(0, sigma^2 I)``, the
sharpness of the loss at the mean hovers below GD's ``2 / lr``, near the root of ``H + H^3 / z = 2 / lr`` with
``z = S c / sigma^2`` (``c`` the squared gradient component along the top eigenvector); larger ``sigma`` and
fewer samples ``S`` lower it. For IVON the comparable quantity is the preconditioned sharpness.

Setting (Cohen et al.'s, as ``genlab reproduce sharpening``): tanh MLP 200-200, MSE ``0.5 ||f(x) - y||^2`` on
one-hot targets, full batch, sharpness by warm-started Lanczos every ``track_every`` steps; runs at one or two
learning rates: GD, VGD at two ``sigma`` with ``S = 1``, and at the larger ``sigma`` with ``S = 2, 4``, and
full-batch IVON (``beta1 = 0``, ``ess = n``). ``--quick``: MNIST-1D (4,000 points), lr 0.2, 800 steps; full:
MNIST-1D at lr 0.1 and 0.2, 2,000 steps (MNIST-scale runs, 11 full-batch gradients per step and learning rate,
do not fit a 2-core session). Each run is an ordinary run directory under ``OUT/runs/``.

Per run, the *late window* is the last ``LATE`` share of the measurements. Verdict rules (fixed before running),
at each learning rate: (1) GD reaches the edge (late mean sharpness >= 0.9 x 2/lr; else ``inconclusive``) and
every VGD run's late mean sharpness is below GD's; (2) it falls with sigma (S = 1); (3) it falls with fewer
samples (S = 1 < 2 < 4 at the larger sigma); (4) each VGD run's late mean sharpness is within a factor
``NEAR`` of the median predicted threshold over the same window. ``held``: all four at every learning rate;
``did not hold``: (1) fails with GD at the edge; ``inconclusive``: otherwise.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genlab.config import TrainConfig
from genlab.curvature.eos import tracked_series
from genlab.experiments.results import ReproductionResult, choose_setting, write_results

CLAIM = ("Full-batch variational GD keeps sharpness below GD's 2/lr, near the root of H + H^3/z = 2/lr with "
         "z = S c / sigma^2, lower for larger sigma and fewer samples (Ghosh et al. 2025).")
LATE = 0.4
EDGE = 0.9
NEAR = 1.25


@dataclass(frozen=True)
class VLSetting:
    """The data, the network, the learning rates, the two sigmas and the run length."""

    dataset: str
    n_train: int | None
    lrs: tuple[float, ...]
    sigmas: tuple[float, float]
    steps: int
    track_every: int
    samples: tuple[int, ...] = (1, 2, 4)
    width: int = 200
    depth: int = 2
    seed: int = 0
    ivon: bool = True
    expected_minutes: float = 0.0

    def runs(self) -> list[tuple[str, float, dict]]:
        """``(name, lr, config overrides)`` of every run."""
        out = []
        small, large = self.sigmas
        for lr in self.lrs:
            out.append((f"gd-lr{lr:g}", lr, dict(optimizer="gd")))
            out.append((f"vgd-lr{lr:g}-sigma{small:g}-S1", lr, dict(optimizer="vgd", vgd_sigma=small, mc_samples=1)))
            for S in self.samples:
                out.append((f"vgd-lr{lr:g}-sigma{large:g}-S{S}", lr,
                            dict(optimizer="vgd", vgd_sigma=large, mc_samples=S)))
            if self.ivon:
                out.append((f"ivon-lr{lr:g}", lr, dict(optimizer="ivon", ivon_beta1=0.0, batch_size=10 ** 9,
                                                       weight_decay=1e-4)))
        return out

    def config(self, lr: float, overrides: dict) -> TrainConfig:
        return TrainConfig(**{**dict(dataset=self.dataset, n_train=self.n_train, model="mlp", width=self.width,
                                     depth=self.depth, activation="tanh", loss="mse", lr=lr, steps=self.steps,
                                     seed=self.seed, eval_every=max(self.steps // 10, 1),
                                     track_sharpness=self.track_every, eval_batch_size=5000), **overrides})


SETTINGS = {
    "quick": VLSetting("mnist1d", None, lrs=(0.2,), sigmas=(0.005, 0.02), steps=800, track_every=25,
                       expected_minutes=4),
    "full": VLSetting("mnist1d", None, lrs=(0.1, 0.2), sigmas=(0.005, 0.02), steps=2000, track_every=25,
                      expected_minutes=20),
}


def late_stats(records: list[dict], lr: float) -> dict[str, Any]:
    """Late-window sharpness (plain and preconditioned) and predicted VL threshold of one run."""
    s = tracked_series(records, "sharpness")
    k = max(int(round(len(s["step"]) * LATE)), 1)
    late_steps = set(int(x) for x in s["step"][-k:])
    late = [r for r in records if "sharpness" in r and r["step"] in late_steps]
    out = {"late_sharpness": float(np.mean([r["sharpness"] for r in late])), "threshold_gd": 2 / lr,
           "late_points": len(late), "max_sharpness": float(np.max(s["sharpness"]))}
    pred = [r["vl_threshold"] for r in late if r.get("vl_threshold") is not None]
    if pred:
        out["predicted_threshold"] = float(np.median(pred))
        out["sharpness_over_predicted"] = out["late_sharpness"] / out["predicted_threshold"]
    pre = [r["preconditioned_sharpness"] for r in late if "preconditioned_sharpness" in r]
    if pre:
        out["late_preconditioned_sharpness"] = float(np.mean(pre))
    return out


def reproduce(out: str | Path, quick: bool = False, quiet: bool = False,
              setting: VLSetting | None = None) -> ReproductionResult:
    """Run the reproduction into ``out`` (runs resumable) and write ``out/results.json`` and figures."""
    from genlab.train import train

    out = Path(out)
    name_of_setting, setting = choose_setting(SETTINGS, quick, setting)
    t0 = time.perf_counter()
    runs, per_run = {}, {}
    for name, lr, overrides in setting.runs():
        if not quiet:
            print(f"vl-eos: run {name} ({setting.steps} full-batch steps on {setting.dataset})")
        run = train(setting.config(lr, overrides), out / "runs" / name, quiet=True)
        runs[name] = run
        stats = late_stats(run.metrics, lr)
        stats.update(lr=lr, optimizer=overrides["optimizer"], sigma=overrides.get("vgd_sigma"),
                     samples=overrides.get("mc_samples"), train_loss=run.summary["train_loss"],
                     test_accuracy=run.summary["test_accuracy"])
        per_run[name] = stats
    metrics, verdict = _verdict(per_run, setting)
    figures = [_plot(out, runs, per_run, setting)]
    result = ReproductionResult(
        name="vl-eos", claim=CLAIM, verdict=verdict, metrics=metrics, figures=figures,
        details={"setting": name_of_setting, "dataset": setting.dataset, "n_train": runs[next(iter(runs))].objective.n,
                 "network": f"mlp tanh {setting.width}x{setting.depth}", "steps": setting.steps,
                 "track_every": setting.track_every, "late": LATE, "edge": EDGE, "near": NEAR, "runs": per_run,
                 "seed": setting.seed, "wall_time_s": time.perf_counter() - t0})
    write_results(out, result)
    return result


def _verdict(per_run: dict[str, dict], setting: VLSetting) -> tuple[dict[str, Any], str]:
    """The rules of the module docstring, at each learning rate."""
    metrics: dict[str, Any] = {}
    small, large = setting.sigmas
    all_held, gd_at_edge_everywhere, below_everywhere = True, True, True
    for lr in setting.lrs:
        key = f"lr{lr:g}"
        gd = per_run[f"gd-{key}"]
        vgd = {n: r for n, r in per_run.items() if r["optimizer"] == "vgd" and r["lr"] == lr}
        at_edge = gd["late_sharpness"] >= EDGE * 2 / lr
        below = all(r["late_sharpness"] < gd["late_sharpness"] for r in vgd.values())
        s_small = per_run[f"vgd-{key}-sigma{small:g}-S1"]["late_sharpness"]
        by_S = [per_run[f"vgd-{key}-sigma{large:g}-S{S}"]["late_sharpness"] for S in setting.samples]
        falls_sigma = by_S[0] < s_small
        falls_samples = all(a < b for a, b in zip(by_S, by_S[1:]))
        ratios = [r.get("sharpness_over_predicted", math.nan) for r in vgd.values()]
        near = all(1 / NEAR <= x <= NEAR for x in ratios)
        metrics.update({f"{key}.gd_late_over_2_over_lr": gd["late_sharpness"] * lr / 2, f"{key}.gd_at_edge": at_edge,
                        f"{key}.vgd_below_gd": below, f"{key}.falls_with_sigma": falls_sigma,
                        f"{key}.falls_with_fewer_samples": falls_samples, f"{key}.near_predicted": near,
                        f"{key}.min_over_predicted": float(np.nanmin(ratios)),
                        f"{key}.max_over_predicted": float(np.nanmax(ratios))})
        for n, r in vgd.items():
            metrics[f"{n}.late_over_2_over_lr"] = r["late_sharpness"] * lr / 2
            metrics[f"{n}.over_predicted"] = r.get("sharpness_over_predicted")
        if f"ivon-{key}" in per_run and "late_preconditioned_sharpness" in per_run[f"ivon-{key}"]:
            metrics[f"ivon-{key}.late_preconditioned_over_2_over_lr"] = (
                per_run[f"ivon-{key}"]["late_preconditioned_sharpness"] * lr / 2)
        all_held &= at_edge and below and falls_sigma and falls_samples and near
        gd_at_edge_everywhere &= at_edge
        below_everywhere &= below
    if all_held:
        verdict = "held"
    elif gd_at_edge_everywhere and not below_everywhere:
        verdict = "did not hold"
    else:
        verdict = "inconclusive"
    return metrics, verdict


def _plot(out: Path, runs: dict, per_run: dict, setting: VLSetting) -> str:
    from genlab.report.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(setting.lrs), figsize=(7 * len(setting.lrs), 4.8), squeeze=False)
    for ax, lr in zip(axes[0], setting.lrs):
        for name, run in runs.items():
            if per_run[name]["lr"] != lr:
                continue
            key = "preconditioned_sharpness" if per_run[name]["optimizer"] == "ivon" else "sharpness"
            s = tracked_series(run.metrics, key)
            line, = ax.plot(s["step"], s[key], lw=1.2, label=name.replace(f"-lr{lr:g}", "") +
                            (" (preconditioned)" if key != "sharpness" else ""))
            if per_run[name].get("predicted_threshold") is not None:
                ax.axhline(per_run[name]["predicted_threshold"], color=line.get_color(), ls=":", lw=1)
        ax.axhline(2 / lr, color="k", ls="--", lw=1, label="2/lr")
        ax.set(xlabel="step", ylabel="sharpness", title=f"lr {lr:g}: sharpness (dotted: predicted VL threshold)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return str(save_figure(fig, out / "figures" / "sharpness.png").relative_to(out))
