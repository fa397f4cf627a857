"""``genlab reproduce sharpening``: progressive sharpening and the edge of stability, with Jacobian norms.

Claims checked:

* Cohen et al. 2021: under full-batch GD, sharpness (the top Hessian eigenvalue
  of the training loss) rises until it reaches ``2/lr`` and then hovers there.
  Our test: every run reaches ``0.9 x 2/lr`` and at least 80% of the
  measurements from then on stay within ``2/lr +- 10%``.
* MacDonald, Valmadre, Lucey 2023: sharpness and the sample-maximum input-output
  Jacobian norm ``max_i ||d f(x_i)/d x||_2`` move together. Our test: their
  Pearson correlation over the progressive-sharpening phase (from the start to
  the first time sharpness reaches ``0.9 x 2/lr``) is at least 0.8 in every run
  that has at least 5 measurements in that phase; correlations over the whole
  run are reported too.

Setting (Cohen et al.'s, on the data these machines have): full-batch GD, fully
connected tanh network 200-200, loss ``0.5 ||f(x) - y||^2`` with one-hot targets
(and cross-entropy), sharpness by warm-started Lanczos on full-batch
Hessian-vector products every few steps. ``--quick``: MNIST-1D (4,000 training
points); full: the first 5,000 MNIST training points. Each run is an ordinary
run directory under ``OUT/runs/`` (resumable; ``genlab curvature`` works on it).
At the end, the Gauss-Newton share of each final top eigenvalue is measured.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genlab.config import TrainConfig
from genlab.curvature.eos import correlation, edge_of_stability_summary, tracked_series
from genlab.experiments.results import ReproductionResult, choose_setting, write_results

CLAIM = ("Under full-batch gradient descent sharpness rises to 2/lr and hovers there (Cohen et al. 2021), and the "
         "sample-maximum input-output Jacobian norm moves together with sharpness (MacDonald et al. 2023).")
BAND = 0.1           # "within 10% of 2/lr"
STAY_FRACTION = 0.8  # share of measurements after reaching that must stay in the band
MIN_CORRELATION = 0.8
MIN_PHASE_POINTS = 5


@dataclass(frozen=True)
class SharpeningSetting:
    """One reproduction setting: the data, the network and the (loss, lr, steps) of each run."""

    dataset: str
    n_train: int | None
    runs: tuple[tuple[str, float, int], ...]
    track_every: int
    width: int = 200
    depth: int = 2
    seed: int = 0
    expected_minutes: float = 0.0

    def config(self, loss: str, lr: float, steps: int) -> TrainConfig:
        return TrainConfig(dataset=self.dataset, n_train=self.n_train, model="mlp", width=self.width,
                           depth=self.depth, activation="tanh", optimizer="gd", lr=lr, steps=steps, loss=loss,
                           seed=self.seed, eval_every=max(steps // 20, 1), track_sharpness=self.track_every,
                           track_jacobian=True, eval_batch_size=5000)


SETTINGS = {
    "quick": SharpeningSetting("mnist1d", None, (("mse", 0.1, 1500), ("mse", 0.2, 1500), ("ce", 0.15, 1500),
                                                 ("ce", 0.25, 1500)), track_every=25, expected_minutes=5),
    # the first full run (2026-11-30) used lr 0.02 / 0.04 (MSE) and 0.1 / 0.2 (CE): in 4,000 steps sharpness
    # reached only 0.72 of 2/lr at MSE lr 0.02, and under CE it rose from 3.4 to at most 7.2 before falling. The
    # learning rates now put 2/lr inside the range progressive sharpening covers: MSE 0.04 / 0.08 (2/lr 50, 25),
    # CE 0.4 / 0.5 (2/lr 5, 4: above the initial sharpness, below its peak) (README)
    "full": SharpeningSetting("mnist", 5000, (("mse", 0.04, 4000), ("mse", 0.08, 4000), ("ce", 0.4, 4000),
                                              ("ce", 0.5, 4000)), track_every=25, expected_minutes=16),
}


def run_name(loss: str, lr: float) -> str:
    return f"{loss}-lr{lr:g}"


def analyse_run(records: list[dict[str, Any]]) -> dict[str, Any]:
    """EoS statistics and sharpness / Jacobian-norm correlations of one tracked run."""
    eos = edge_of_stability_summary(records, band=BAND)
    s = tracked_series(records, "sharpness", "jacobian_spec_max", "stability_threshold")
    out = {**eos, "corr_all": correlation(s["sharpness"], s["jacobian_spec_max"])}
    end = len(s["step"]) if eos["reached_step"] is None else int(np.searchsorted(s["step"], eos["reached_step"])) + 1
    out["corr_sharpening"] = correlation(s["sharpness"][:end], s["jacobian_spec_max"][:end])
    out["jacobian_spec_max_initial"] = float(s["jacobian_spec_max"][0])
    out["jacobian_spec_max_final"] = float(s["jacobian_spec_max"][-1])
    return out


def reproduce(out: str | Path, quick: bool = False, quiet: bool = False,
              setting: SharpeningSetting | None = None) -> ReproductionResult:
    """Run the reproduction into ``out`` (resumable) and write ``out/results.json`` and figures.

    ``setting`` replaces the quick/full setting (tests use a tiny one).
    """
    from genlab.curvature.analysis import curvature
    from genlab.train import train

    out = Path(out)
    name_of_setting, setting = choose_setting(SETTINGS, quick, setting)
    t0 = time.perf_counter()
    runs, per_run = {}, {}
    for loss, lr, steps in setting.runs:
        name = run_name(loss, lr)
        if not quiet:
            print(f"sharpening: run {name} ({steps} steps of full-batch GD on {setting.dataset})")
        run = train(setting.config(loss, lr, steps), out / "runs" / name, quiet=True)
        runs[name] = run
        stats = analyse_run(run.metrics)
        cur = curvature(run.path, top_k=1, tol=1e-6, gauss_newton=True, dtype="float64", figures=False)
        gn = cur["gauss_newton"]
        stats.update(loss=loss, lr=lr, threshold=2 / lr, steps=steps, train_loss=run.summary["train_loss"],
                     train_accuracy=run.summary["train_accuracy"], test_accuracy=run.summary["test_accuracy"],
                     final_sharpness=cur["top_eigenvalues"][0], gauss_newton_fraction=gn["gauss_newton_fraction"],
                     gauss_newton_top_ratio=gn["top_ratio"],
                     mean_hvps_per_measurement=float(np.mean(tracked_series(run.metrics, "sharpness_hvps")[
                         "sharpness_hvps"])))
        per_run[name] = stats
    figures = [_plot_sharpness(out, runs), _plot_jacobian(out, runs)]
    metrics, verdict = _verdict(per_run)
    result = ReproductionResult(
        name="sharpening", claim=CLAIM, verdict=verdict, metrics=metrics, figures=figures,
        details={"setting": name_of_setting, "dataset": setting.dataset,
                 "n_train": runs[next(iter(runs))].objective.n, "network": f"mlp tanh {setting.width}x{setting.depth}",
                 "track_every": setting.track_every, "band": BAND, "stay_fraction": STAY_FRACTION,
                 "min_correlation": MIN_CORRELATION, "runs": per_run, "seed": setting.seed,
                 "wall_time_s": time.perf_counter() - t0})
    write_results(out, result)
    return result


def _verdict(per_run: dict[str, dict]) -> tuple[dict[str, Any], str]:
    """Each part of the claim tested per run with the thresholds declared at the top of the module.

    ``held``: every run reached 2/lr and stayed, and the Jacobian tracked sharpness in every run with a
    sharpening phase. ``inconclusive``: the MSE runs (Cohen et al.'s main setting) showed the edge of
    stability but another part failed. ``did not hold``: the MSE runs did not.
    """
    reached = {k: r["reached_step"] is not None for k, r in per_run.items()}
    stayed = {k: reached[k] and bool(r["fraction_in_band_after"] >= STAY_FRACTION) for k, r in per_run.items()}
    phase = {k: r["corr_sharpening"]["pearson"] for k, r in per_run.items()
             if r["corr_sharpening"]["points"] >= MIN_PHASE_POINTS}
    by_loss = {loss: all(stayed[k] for k, r in per_run.items() if r["loss"] == loss)
               for loss in sorted({r["loss"] for r in per_run.values()})}
    eos_held = all(stayed.values())
    jac_held = bool(phase) and all(v >= MIN_CORRELATION for v in phase.values())
    metrics: dict[str, Any] = {
        "eos_held": eos_held, **{f"eos_held_{loss}": held for loss, held in by_loss.items()},
        "jacobian_tracking_held": jac_held,
        "runs_reaching_band": sum(reached.values()), "runs_staying_in_band": sum(stayed.values()),
        "runs": len(per_run),
        "min_fraction_in_band_after": min((r["fraction_in_band_after"] for r in per_run.values()
                                           if r["reached_step"] is not None), default=math.nan),
        "runs_with_sharpening_phase": len(phase),
        "runs_jacobian_tracking": sum(v >= MIN_CORRELATION for v in phase.values()),
        "min_corr_sharpening": min(phase.values(), default=math.nan),
        "median_corr_all": float(np.median([r["corr_all"]["pearson"] for r in per_run.values()])),
        "min_gauss_newton_fraction": min(r["gauss_newton_fraction"] for r in per_run.values()),
    }
    for k, r in per_run.items():
        metrics[f"{k}.reached_step"] = r["reached_step"]
        metrics[f"{k}.fraction_in_band_after"] = r["fraction_in_band_after"]
        metrics[f"{k}.ratio_after_mean"] = r["ratio_after_mean"]
        metrics[f"{k}.corr_sharpening"] = r["corr_sharpening"]["pearson"]
        metrics[f"{k}.corr_all"] = r["corr_all"]["pearson"]
        metrics[f"{k}.gauss_newton_fraction"] = r["gauss_newton_fraction"]
        metrics[f"{k}.test_accuracy"] = r["test_accuracy"]
    if eos_held and jac_held:
        verdict = "held"
    elif by_loss.get("mse", False):
        verdict = "inconclusive"
    else:
        verdict = "did not hold"
    return metrics, verdict


def _plot_sharpness(out: Path, runs: dict) -> str:
    from genlab.report.figures import pyplot, save_figure

    plt = pyplot()
    losses = sorted({r.config.data.loss for r in runs.values()}, key=lambda s: s != "mse")
    fig, axes = plt.subplots(1, len(losses), figsize=(5.5 * len(losses), 4), squeeze=False)
    for ax, loss in zip(axes[0], losses):
        for (name, run), color in zip(runs.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
            if run.config.data.loss != loss:
                continue
            s = tracked_series(run.metrics, "sharpness")
            ax.plot(s["step"], s["sharpness"], color=color, label=f"lr={run.config.optimizer.lr:g}")
            ax.axhline(2 / run.config.optimizer.lr, color=color, ls="--", lw=1)
        ax.set(xlabel="step", ylabel="sharpness (top Hessian eigenvalue)",
               title=f"{loss}: sharpness vs steps (dashed: 2/lr)")
        ax.grid(alpha=0.3)
        ax.legend()
    return str(save_figure(fig, out / "figures" / "sharpness.png").relative_to(out))


def _plot_jacobian(out: Path, runs: dict) -> str:
    from genlab.report.figures import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, run in runs.items():
        s = tracked_series(run.metrics, "sharpness", "jacobian_spec_max")
        ax.plot(s["jacobian_spec_max"], s["sharpness"], marker=".", ms=3, lw=0.8, label=name)
    ax.set(xlabel="max_i ||df(x_i)/dx||_2 (training sample)", ylabel="sharpness",
           title="sharpness vs sample-max input-output Jacobian norm")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return str(save_figure(fig, out / "figures" / "sharpness_vs_jacobian.png").relative_to(out))
