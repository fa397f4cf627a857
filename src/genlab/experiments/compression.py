"""Reproduction ``compression``: certified compression bounds (Lotfi et al. 2022) on four real datasets.

Claim: training in a random subspace, quantizing to a small learned codebook and arithmetic-coding the result
gives error bounds that are not vacuous -- on MNIST and Fashion-MNIST as tight as or tighter than the published
data-independent figures (11.6% and 32.8%). Each row is one ``genlab bound`` pipeline (subspace run, quantized
run, ``certificate.json`` + ``message.bin``), then re-checked by :func:`~genlab.bounds.compression.certificate.verify`
from the certificate and message alone. A sweep over the intrinsic dimension ``d`` on one dataset shows the bound
and its parts (train error, message bits) against ``d``.

Verdict rules, fixed before running: every row's certificate verifies, and every bound is below the error of
guessing (``1 - 1/C``); then ``held`` if the MNIST and Fashion-MNIST data-independent bounds are at most the
published 11.6% and 32.8%, ``did not hold`` if a bound is vacuous or fails verification, else ``inconclusive``.
The full setting also records the issue's own targets (MNIST <= 6%, Fashion-MNIST <= 20%, data-dependent MNIST
<= 2%) without making them part of the verdict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.bounds.compression.certificate import DEFAULT_GRID
from genlab.bounds.compression.verify import verify
from genlab.bounds.compression.pipeline import BoundConfig, compression_bound
from genlab.experiments.results import ReproductionResult, choose_setting, write_results

CLAIM = ("Subspace training, quantization and arithmetic coding give certified, non-vacuous error bounds, on MNIST "
         "and Fashion-MNIST at most the published 11.6% and 32.8% (Lotfi et al. 2022).")
PUBLISHED = {"mnist": 0.116, "fashion-mnist": 0.328}
# issue 18's targets (the first round asked for 25% and 3%): recorded, not part of the verdict
TARGETS = {"mnist": 0.06, "fashion-mnist": 0.20, "mnist-data-dependent": 0.02}
CLASSES = {"mnist1d": 10, "digits": 10, "mnist": 10, "fashion-mnist": 10}
# What the settings below were chosen among (by hand, on these datasets): charged in every certificate.
SEARCHED = {
    "model": ["cnn", "lenet5", "mlp"],
    "width": [None, 12, 16, 64],
    "lr_schedule": ["constant", "cosine"],
    "epochs": [3, 4, 5, 10, 15, 20, 30, 100, 200],
    "lr": [0.01, 0.03, 0.05, 0.1],
    "subspace_noise": [0.0, 0.2, 0.4],
    "projection_scale": ["none", "fan-in"],
    "qat_epochs": [1, 2, 3, 5, 10, 15, 20, 30, 60],
    "qat_lr": [0.001, 0.003, 0.005, 0.01],
    "quant_stages": [1, 4, 8],
    "prior_epochs": [5, 10, 20, 30, 40],
}


def _row(name: str, **kw: Any) -> tuple[str, BoundConfig]:
    grid = {**DEFAULT_GRID, **SEARCHED}
    if kw.get("prior_split") is not None:
        grid["prior_split"] = [None, 20000, 30000]   # the splits we tried
    return name, BoundConfig(**{"batch_size": 128, "projection": "sparse", "quant_levels": 5, "grid": grid, **kw})


@dataclass
class CompressionSetting:
    rows: list[tuple[str, BoundConfig]]
    sweep_dataset: str
    sweep: list[tuple[str, BoundConfig]] = field(default_factory=list)
    expected_minutes: float = 5


def _sweep(dataset: str, dims: list[int], **kw: Any) -> list[tuple[str, BoundConfig]]:
    return [_row(f"{dataset}-d{d}", dataset=dataset, intrinsic_dim=d, **kw) for d in dims]


# The recipes (chosen by hand among SEARCHED, see the README): small data sets train long at small d; MNIST and
# Fashion-MNIST use LeNet-5 in a 1,000-dimensional sparse subspace with fan-in row scaling, 20 epochs at lr 0.1,
# and a long quantization-aware stage in 4 progressive stages.
MNIST1D = dict(dataset="mnist1d", model="cnn", intrinsic_dim=500, epochs=100, lr=0.05, qat_epochs=30, qat_lr=0.01)
DIGITS = dict(dataset="digits", model="mlp", intrinsic_dim=250, epochs=200, lr=0.1, qat_epochs=30, qat_lr=0.01)
DIGITS_SWEEP = {k: v for k, v in DIGITS.items() if k not in ("dataset", "intrinsic_dim")}
LENET = dict(model="lenet5", intrinsic_dim=1000, lr=0.1, qat_lr=0.01, projection_scale="fan-in", quant_stages=4)
SETTINGS = {
    "quick": CompressionSetting(
        rows=[_row("mnist1d", **MNIST1D), _row("digits", **DIGITS),
              _row("mnist", dataset="mnist", **LENET, epochs=3, qat_epochs=3),
              _row("fashion-mnist", dataset="fashion-mnist", **LENET, epochs=3, qat_epochs=3)],
        sweep_dataset="digits", sweep=_sweep("digits", [50, 100, 250, 500], **DIGITS_SWEEP), expected_minutes=4),
    "full": CompressionSetting(
        rows=[_row("mnist1d", **MNIST1D), _row("digits", **DIGITS),
              _row("mnist", dataset="mnist", **LENET, epochs=20, qat_epochs=30),
              _row("fashion-mnist", dataset="fashion-mnist", **LENET, epochs=20, qat_epochs=30),
              _row("mnist-data-dependent", dataset="mnist", model="lenet5", intrinsic_dim=50, epochs=10, lr=0.03,
                   quant_levels=3, qat_epochs=3, qat_lr=0.003, prior_split=30000, prior_epochs=40, prior_lr=0.001)],
        sweep_dataset="mnist",
        sweep=_sweep("mnist", [250, 500, 1000, 2000], model="lenet5", epochs=5, lr=0.1, qat_epochs=5, qat_lr=0.01,
                     projection_scale="fan-in"),
        expected_minutes=20),
}


def reproduce(out: str | Path, quick: bool = False, quiet: bool = False,
              setting: CompressionSetting | None = None) -> ReproductionResult:
    """Run every row and the sweep into ``out`` (resumable), verify each certificate, write results and figure."""
    out = Path(out)
    name_of_setting, setting = choose_setting(SETTINGS, quick, setting)
    t0 = time.perf_counter()
    rows: dict[str, dict[str, Any]] = {}
    for name, cfg in [*setting.rows, *setting.sweep]:
        if name in rows:
            continue
        flat = cfg.flat()
        if not quiet:
            print(f"compression: {name} ({flat['dataset']}, {flat['model']}, d={flat['intrinsic_dim']}, "
                  f"L={flat['quant_levels']}, {flat['epochs']} epochs)")
        cert = compression_bound(cfg, out / "runs" / name, quiet=True)
        checked = verify(out / "runs" / name)   # raises on any mismatch: a row that does not verify stops the run
        rows[name] = {"dataset": flat["dataset"], "model": flat["model"], "seed": flat["seed"],
                      "d": flat["intrinsic_dim"], "levels": flat["quant_levels"],
                      "projection": flat["projection"], "projection_scale": flat["projection_scale"],
                      "qat_stages": flat["quant_stages"], "prior_split": flat["prior_split"], "n": cert["n"],
                      "train_error": cert["train_error"], "test_error": cert["test_error"],
                      "message_bits": cert["message_bits"], "hyperparameter_bits": cert["hyperparameter_bits"],
                      "bound": cert["bound"], "bounds": cert["bounds"], "verified": checked["bound"] == cert["bound"],
                      "time_s": cert["time_s"]}
    metrics, verdict = _verdict(rows, setting)
    figures = [_plot(out, rows, setting)]
    result = ReproductionResult(
        name="compression", claim=CLAIM, verdict=verdict, metrics=metrics, figures=figures,
        details={"setting": name_of_setting, "rows": rows, "published": PUBLISHED, "targets": TARGETS,
                 "searched_grid": SEARCHED, "wall_time_s": time.perf_counter() - t0})
    write_results(out, result)
    return result


def _verdict(rows: dict[str, dict], setting: CompressionSetting) -> tuple[dict[str, Any], str]:
    metrics: dict[str, Any] = {}
    all_verified = all(r["verified"] for r in rows.values())
    non_vacuous = all(r["bound"] < 1 - 1 / CLASSES[r["dataset"]] for r in rows.values())
    for name, _ in setting.rows:
        r = rows[name]
        metrics[f"{name}.bound"] = r["bound"]
        metrics[f"{name}.train_error"] = r["train_error"]
        metrics[f"{name}.message_bits"] = r["message_bits"]
    metrics.update(all_verified=all_verified, all_non_vacuous=non_vacuous)
    tight = True
    for dataset, published in PUBLISHED.items():
        if dataset in rows:
            metrics[f"{dataset}.at_most_published"] = rows[dataset]["bound"] <= published
            tight &= rows[dataset]["bound"] <= published
        else:
            tight = False
    for name, target in TARGETS.items():
        if name in rows:
            metrics[f"{name}.meets_target"] = rows[name]["bound"] <= target
    if not (all_verified and non_vacuous):
        return metrics, "did not hold"
    return metrics, "held" if tight else "inconclusive"


def _plot(out: Path, rows: dict[str, dict], setting: CompressionSetting) -> str:
    from genlab.report.figures import pyplot, save_figure

    plt = pyplot()
    sweep_names = {name for name, _ in setting.sweep}
    points = sorted((r["d"], r) for name, r in rows.items() if name in sweep_names)
    dims = [d for d, _ in points]
    fig, (ax, ax_bits) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax.plot(dims, [100 * r["bound"] for _, r in points], "o-", label="certified bound (Occam kl)")
    ax.plot(dims, [100 * r["train_error"] for _, r in points], "s--", label="train error (decoded predictor)")
    ax.plot(dims, [100 * r["test_error"] for _, r in points], "^:", label="test error")
    ax.set(xscale="log", xlabel="intrinsic dimension d", ylabel="error (%)",
           title=f"{setting.sweep_dataset}: bound and its parts against d")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax_bits.plot(dims, [r["message_bits"] for _, r in points], "o-", label="message bits")
    ax_bits.plot(dims, [r["message_bits"] / r["d"] for _, r in points], "s--", label="bits per coordinate")
    ax_bits.set(xscale="log", yscale="log", xlabel="intrinsic dimension d", ylabel="bits",
                title="message length (arithmetic-coded, incl. codebook and prefix)")
    ax_bits.grid(alpha=0.3)
    ax_bits.legend(fontsize=8)
    return str(save_figure(fig, out / "figures" / "bound-vs-d.png").relative_to(out))
