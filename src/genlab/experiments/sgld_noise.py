"""``genlab reproduce sgld-noise``: which SGLD noise shape gives the smallest information-theoretic bound.

Claim (Wang, Zhang, Zhang, Meng, Chen, Liu, NeurIPS 2021): for SGLD the mutual information ``I(S; W_T)`` is
bounded by ``sum_t (lr^2 / 2) E[(g_t - mu_t)^T Sigma_t^-1 (g_t - mu_t)]``, and at a fixed noise trace the
covariance minimising it is ``Sigma proportional to C^1/2`` (``C`` the expected gradient covariance), for which
the KL term is ``(tr C^1/2)^2 / (d tr C)`` of isotropic noise's.

Part (a), closed form: a linear least-squares and a softmax (logistic) model on scikit-learn's digits
(``d = 650``), trained briefly by GD; at the trained weights ``C`` is the exact covariance of all per-sample
gradients. For each shape at equal trace the implemented covariance's KL term ``tr(Sigma^-1 C)`` is compared
with its closed form (isotropic ``d tr C``, diagonal ``#{C_ii > 0} tr C``, gradcov ``rank(C) tr C``,
sqrt-gradcov ``(tr C^1/2)^2``, all over the trace). Two more checks: the per-step quadratic form the optimizer
accounts, averaged over random batches, against its expectation ``tr(Sigma^-1 C) (n - B) / (B (n - 1))``; and
how much of the optimum survives estimating ``C`` from 64 gradients (with and without completion, see
:mod:`genlab.optim.noise`).

Part (b), the paper's network: Zhu et al.'s 11,330-parameter CNN on the first 10,000 Fashion-MNIST training
points, SGLD with each shape at the same trace, lr and seed; ``C`` and the prior drift are estimated on
held-out points (the training split beyond the first 10,000), so ``Sigma_t`` is independent of the sample as
the bound requires. Table: train loss, test error, measured 0-1 gap, the information sum and the bound
``sqrt(2 (1/2)^2 I / n)`` on the expected 0-1 gap.

Part (c), under a non-vacuous bound: the same four shapes at one trace with full-batch Langevin dynamics on
MNIST (20,000 training images, the size of Haghifam et al.'s own MNIST runs; an MLP with one hidden layer of 100
units) under Haghifam et al.'s CMI bound
(``--sgld-bound cmi``, one bound pair per run, ``C`` estimated on 64 points beyond the pair's ghost drawn afresh
each step), several seeds. Each seed draws its pair, ghost and selector from the run seed, so the shapes'
runs of one seed share them and are compared paired. Under this bound the prior forecasts a pair's gradient
by its two members' mean, so ``E[(g - mu)(g - mu)^T]`` is the per-sample gradient covariance (over ``4 n^2``):
Wang et al.'s objective again, now with a bound well below 1. Per shape: the bound on the expected test
error ``E[train error] + sqrt(2 E[I])`` (:func:`genlab.bounds.infotheory.bound_over_seeds`, with its 95% upper
limit), its sharpened one-pair form (:func:`genlab.bounds.infotheory.pair_sign_bound`, the tightest valid bound
here; increasing in ``E[I]`` like the stated form), the measured test error, the training loss.

Verdict rules (fixed before running): part (a) holds when every implemented KL term matches its closed form to
``CLOSED_FORM_RTOL`` (1e-3 relative) and sqrt-gradcov's is the smallest. Part (b) compares bounds only at equal training loss (final train
losses within ``LOSS_SPREAD`` relative of each other at a trace); it holds at a trace when sqrt-gradcov's bound
is the lowest there. ``held``: (a) and (b) at every trace; ``did not hold``: (a) fails, or another shape's bound
is lower at equal training loss; ``inconclusive``: the training losses differ too much to compare.
Part (c) compares sqrt-gradcov with each other shape by the seeds' paired differences of ``I`` (the bound is
increasing in ``E[I]``): sqrt-gradcov is *lower* when the one-sided 95% Student-t lower limit of
``mean(I_other - I_sqrt)`` is above 0 and the other shape does not train better (mean final train loss not below
sqrt-gradcov's by more than ``LOSS_SPREAD``); the other shape is lower when the upper limit is below 0 and it
does not train worse by more than ``LOSS_SPREAD``; otherwise the pair is unresolved. Part (c) holds when
sqrt-gradcov is lower than every other shape, does not hold when some shape is lower, else is inconclusive.
Overall: ``did not hold`` if any part did not hold, ``held`` if every part held, else ``inconclusive``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.bounds.infotheory import bound_over_seeds
from genlab.config import TrainConfig
from genlab.experiments.results import ReproductionResult, choose_setting, write_results
from genlab.optim.noise import SHAPES, expected_kl_term, noise_covariance

CLAIM = ("At an equal noise trace, SGLD noise shaped as the square root of the gradient covariance minimises the "
         "information-theoretic generalization bound, with KL term (tr C^1/2)^2 / (d tr C) of isotropic noise's "
         "(Wang et al. 2021).")
CLOSED_FORM_RTOL = 1e-3  # eigenvalues at the numerical-rank threshold each shift the sqrt sum by ~1e-5
LOSS_SPREAD = 0.10  # "equal training loss": max / min - 1 of the final train losses at one trace
ESTIMATE_BATCH = 64


@dataclass(frozen=True)
class CMIPart:
    """Part (c)'s runs: full-batch Langevin dynamics under the CMI bound, each shape at ``trace``, ``seeds`` seeds."""

    dataset: str = "mnist"
    n_train: int = 20000
    model: str = "mlp"
    width: int = 100
    depth: int = 1
    lr: float = 0.3
    steps: int = 300
    trace: float = 1.0
    cov_size: int = 64
    seeds: int = 6

    def config(self, shape: str, seed: int) -> TrainConfig:
        return TrainConfig(dataset=self.dataset, n_train=self.n_train, model=self.model, width=self.width,
                           depth=self.depth, optimizer="gld", lr=self.lr, steps=self.steps, seed=seed,
                           sgld_noise=shape, noise_trace=self.trace, sgld_bound="cmi", sgld_cov_size=self.cov_size,
                           eval_every=self.steps, checkpoint_every=self.steps, eval_batch_size=5000)


@dataclass(frozen=True)
class SGLDNoiseSetting:
    """Part (b)'s runs: data, network, optimiser and the traces; part (a) is the same in every setting."""

    dataset: str = "fashion-mnist"
    n_train: int = 10000
    model: str = "zhu-cnn"
    lr: float = 0.05
    batch_size: int = 64
    epochs: int = 3
    traces: tuple[float, ...] = (1e-3,)
    shapes: tuple[str, ...] = SHAPES
    seed: int = 0
    closed_form_steps: int = 100
    monte_carlo_batches: int = 400
    cmi: CMIPart | None = CMIPart()  # part (c); None leaves it out
    expected_minutes: float = 0.0

    def config(self, shape: str, trace: float) -> TrainConfig:
        return TrainConfig(dataset=self.dataset, n_train=self.n_train, model=self.model, optimizer="sgld",
                           lr=self.lr, batch_size=self.batch_size, epochs=self.epochs, seed=self.seed,
                           sgld_noise=shape, noise_trace=trace, eval_batch_size=5000)


SETTINGS = {
    "quick": SGLDNoiseSetting(epochs=3, traces=(1e-3,), cmi=CMIPart(steps=100, seeds=3), expected_minutes=6),
    "full": SGLDNoiseSetting(epochs=10, traces=(1e-3, 1e-2), cmi=CMIPart(steps=300, seeds=6), expected_minutes=40),
}


def run_name(shape: str, trace: float) -> str:
    return f"{shape}-trace{trace:g}"


RANK_TOL = 1e-10  # eigenvalues below this share of the largest are roundoff (gram_eigen drops them too)


def exact_covariance(G: torch.Tensor) -> torch.Tensor:
    """The covariance of the rows of ``G`` with its roundoff eigenvalues set to zero.

    Softmax gradients sum to zero over the classes, so ``C`` has an exact null space that floating point fills
    with ``1e-16``-sized eigenvalues; charged against a ``1e-12`` floor they would swamp the comparison.
    """
    Gc = G - G.mean(dim=0)
    lam, U = torch.linalg.eigh(Gc.T @ Gc / G.shape[0])
    lam = torch.where(lam > RANK_TOL * lam.max(), lam, torch.zeros_like(lam))
    return U @ torch.diag(lam) @ U.T


def closed_form_terms(C: torch.Tensor) -> dict[str, float]:
    """``tr(Sigma^-1 C) * trace`` in closed form for each shape (no floor)."""
    lam = torch.linalg.eigvalsh(C)
    lam = lam[lam > RANK_TOL * lam.max()]
    tr = float(lam.sum())
    return {"isotropic": C.shape[0] * tr, "diagonal": int((C.diagonal() > 0).sum()) * tr, "gradcov": lam.numel() * tr,
            "sqrt-gradcov": float(lam.sqrt().sum()) ** 2}


def closed_form_check(out: Path, loss: str, setting: SGLDNoiseSetting, quiet: bool) -> dict[str, Any]:
    """Part (a) for one linear model (``loss`` mse: least squares; ce: softmax regression) on digits."""
    from genlab.curvature.gradcov import stacked_per_sample_grads
    from genlab.train import train

    cfg = TrainConfig(dataset="digits", model="linear", loss=loss, optimizer="gd", lr=0.5 if loss == "ce" else 0.05,
                      steps=setting.closed_form_steps, seed=setting.seed, dtype="float64")
    run = train(cfg, out / "runs" / f"closed-form-{loss}", quiet=True)
    G = stacked_per_sample_grads(run.objective)
    n, d = G.shape
    C = exact_covariance(G)
    exact = closed_form_terms(C)
    implemented = {s: expected_kl_term(noise_covariance(s, G, 1.0, 1e-12, complete=False), C) for s in SHAPES}
    rel_err = {s: abs(implemented[s] / exact[s] - 1) for s in SHAPES}
    ratio = {s: implemented[s] / implemented["isotropic"] for s in SHAPES}
    gen = torch.Generator().manual_seed(setting.seed)
    # the accounted quadratic form, averaged over batches, against its expectation (default floor; raw C,
    # whose roundoff directions the batch means carry too)
    mc = {}
    Gc = G - G.mean(dim=0)
    for shape in ("isotropic", "sqrt-gradcov"):
        cov = noise_covariance(shape, G, 1.0, 1e-3, complete=False)
        q = []
        for _ in range(setting.monte_carlo_batches):
            idx = torch.randperm(n, generator=gen)[:ESTIMATE_BATCH]
            q.append(cov.inv_quad(G[idx].mean(dim=0) - G.mean(dim=0)))
        expected = (expected_kl_term(cov, Gc.T @ Gc / n) * (n - ESTIMATE_BATCH)
                    / (ESTIMATE_BATCH * (n - 1)))
        mc[shape] = {"mean": float(np.mean(q)), "expected": expected,
                     "z": float((np.mean(q) - expected) / (np.std(q) / math.sqrt(len(q))))}
    # Sigma estimated from 64 gradients: exact KL term relative to the optimum (tr C^1/2)^2
    estimated = {}
    for complete in (True, False):
        terms = []
        for _ in range(5):
            idx = torch.randperm(n, generator=gen)[:ESTIMATE_BATCH]
            terms.append(expected_kl_term(noise_covariance("sqrt-gradcov", G[idx], 1.0, 1e-3, complete), C))
        estimated["completed" if complete else "plain"] = float(np.mean(terms)) / exact["sqrt-gradcov"]
    if not quiet:
        print(f"sgld-noise (a) {loss}: d={d}, sqrt/iso {ratio['sqrt-gradcov']:.4f} "
              f"(closed form {exact['sqrt-gradcov'] / exact['isotropic']:.4f}), max rel err {max(rel_err.values()):.1e}")
    return {"loss": loss, "n": n, "d": d, "train_loss": run.summary["train_loss"], "kl_terms": implemented,
            "closed_form": exact, "relative_error": rel_err, "ratio_to_isotropic": ratio,
            "closed_form_sqrt_ratio": exact["sqrt-gradcov"] / exact["isotropic"], "monte_carlo": mc,
            "estimated_sqrt_over_optimum": estimated,
            "isotropic_over_optimum": exact["isotropic"] / exact["sqrt-gradcov"]}


def reproduce(out: str | Path, quick: bool = False, quiet: bool = False,
              setting: SGLDNoiseSetting | None = None) -> ReproductionResult:
    """Run the reproduction into ``out`` (runs resumable) and write ``out/results.json`` and figures.

    ``setting`` replaces the quick/full setting (tests use a tiny one).
    """
    from genlab.train import train

    out = Path(out)
    name_of_setting, setting = choose_setting(SETTINGS, quick, setting)
    t0 = time.perf_counter()
    part_a = {loss: closed_form_check(out, loss, setting, quiet) for loss in ("mse", "ce")}
    runs, table = {}, {}
    for trace in setting.traces:
        for shape in setting.shapes:
            name = run_name(shape, trace)
            if not quiet:
                print(f"sgld-noise (b): run {name} ({setting.epochs} epochs of SGLD, {setting.model} on "
                      f"{setting.n_train} {setting.dataset} points)")
            run = train(setting.config(shape, trace), out / "runs" / name, quiet=True)
            s = run.summary
            runs[name] = run
            table[name] = {"shape": shape, "trace": trace, "train_loss": s["train_loss"],
                           "train_error": 1 - s["train_accuracy"], "test_error": 1 - s["test_accuracy"],
                           "gap": s["generalization_gap_accuracy"], "information": s["sgld_information"],
                           "bound": s["sgld_error_gap_bound"], "wall_time_s": s.get("wall_time_s"),
                           "heldout": s.get("sgld_heldout")}
    part_c = cmi_part(out, setting.cmi, setting.shapes, quiet) if setting.cmi is not None else None
    metrics, verdict = _verdict(part_a, table, setting, part_c)
    figures = [_plot_bounds(out, table, setting), _plot_information(out, runs, setting)]
    if part_c is not None:
        figures.append(_plot_cmi(out, part_c, setting.cmi))
    result = ReproductionResult(
        name="sgld-noise", claim=CLAIM, verdict=verdict, metrics=metrics, figures=figures,
        details={"setting": name_of_setting, "part_a": part_a, "part_b": table, "part_c": part_c,
                 "part_c_setting": None if setting.cmi is None else asdict(setting.cmi),
                 "network": setting.model, "dataset": setting.dataset, "n_train": setting.n_train,
                 "lr": setting.lr, "batch_size": setting.batch_size, "epochs": setting.epochs,
                 "seed": setting.seed, "loss_spread": LOSS_SPREAD, "closed_form_rtol": CLOSED_FORM_RTOL,
                 "wall_time_s": time.perf_counter() - t0})
    write_results(out, result)
    return result


def cmi_part(out: Path, part: CMIPart, shapes: tuple[str, ...], quiet: bool) -> dict[str, dict]:
    """Part (c): every shape at ``part.trace`` for ``part.seeds`` seeds under the CMI bound; per shape the runs
    and :func:`~genlab.bounds.infotheory.bound_over_seeds` over them (runs resumable)."""
    from genlab.train import train

    runs: dict[str, list[dict]] = {shape: [] for shape in shapes}
    for seed in range(part.seeds):
        for shape in shapes:
            if not quiet:
                print(f"sgld-noise (c): {shape}, seed {seed} ({part.steps} steps of Langevin dynamics, {part.model} on "
                      f"{part.n_train} {part.dataset} points, CMI bound)")
            s = train(part.config(shape, seed), out / "runs" / f"cmi-{shape}-seed{seed}", quiet=True).summary
            runs[shape].append({"seed": seed, "information": s["sgld_information"], "pairs": s["sgld_bound_pairs"],
                                "train_error": s["sgld_bound_train_error"], "train_loss": s["train_loss"],
                                "test_error": 1 - s["test_accuracy"], "gap_bound": s["sgld_error_gap_bound"],
                                "wall_time_s": s.get("wall_time_s")})
    table = {}
    for shape, rows in runs.items():
        agg = bound_over_seeds([r["information"] for r in rows], [r["train_error"] for r in rows],
                               points=rows[0]["pairs"], single_pair=rows[0]["pairs"] == 1)
        test = np.array([r["test_error"] for r in rows])
        table[shape] = {"runs": rows, **agg, "train_loss_mean": float(np.mean([r["train_loss"] for r in rows])),
                        "test_error_mean": float(test.mean()),
                        "test_error_std": float(test.std(ddof=1)) if len(test) > 1 else None}
    return table


def paired_limits(differences, confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """Mean of paired differences and its one-sided Student-t lower and upper limits (``None`` with one pair)."""
    from scipy import stats

    diff = np.asarray(differences, dtype=float)
    mean = float(diff.mean())
    if len(diff) < 2:
        return mean, None, None
    half = float(stats.t.ppf(confidence, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff)))
    return mean, mean - half, mean + half


def _cmi_verdict(table: dict[str, dict]) -> tuple[dict[str, Any], str]:
    """Part (c)'s rule (module docstring): sqrt-gradcov against each other shape, paired by seed."""
    sq = table["sqrt-gradcov"]
    metrics: dict[str, Any] = {}
    outcomes = {}
    for shape, r in table.items():
        for key in ("test_error_bound", "test_error_bound_upper", "test_error_bound_sharp",
                    "test_error_bound_sharp_upper", "gap_bound", "information_mean", "test_error_mean",
                    "train_loss_mean"):
            if key in r:
                metrics[f"cmi.{shape}.{key}"] = r[key]
        if shape == "sqrt-gradcov":
            continue
        mean, low, high = paired_limits([a["information"] - b["information"] for a, b in zip(r["runs"], sq["runs"])])
        trains_better = r["train_loss_mean"] < sq["train_loss_mean"] / (1 + LOSS_SPREAD)
        trains_worse = r["train_loss_mean"] > sq["train_loss_mean"] * (1 + LOSS_SPREAD)
        if low is not None and low > 0 and not trains_better:
            outcomes[shape] = "sqrt-gradcov lower"
        elif high is not None and high < 0 and not trains_worse:
            outcomes[shape] = f"{shape} lower"
        else:
            outcomes[shape] = "unresolved"
        metrics[f"cmi.{shape}.information_minus_sqrt"] = mean
        metrics[f"cmi.{shape}.information_minus_sqrt_lower"] = low
        metrics[f"cmi.{shape}.outcome"] = outcomes[shape]
    metrics["cmi.sqrt_over_isotropic_bound"] = sq["gap_bound"] / table["isotropic"]["gap_bound"]
    metrics["cmi.lowest_bound_shape"] = min(table, key=lambda s: table[s]["gap_bound"])
    if all(o == "sqrt-gradcov lower" for o in outcomes.values()):
        verdict = "held"
    elif any(o.endswith(" lower") and not o.startswith("sqrt-gradcov") for o in outcomes.values()):
        verdict = "did not hold"
    else:
        verdict = "inconclusive"
    metrics["cmi.verdict"] = verdict
    return metrics, verdict


def _verdict(part_a: dict, table: dict, setting: SGLDNoiseSetting,
             part_c: dict | None = None) -> tuple[dict[str, Any], str]:
    """The rules of the module docstring, applied to part (a), to each trace of part (b) and to part (c)."""
    a_held = all(max(r["relative_error"].values()) < CLOSED_FORM_RTOL
                 and r["kl_terms"]["sqrt-gradcov"] <= min(r["kl_terms"].values()) * (1 + 1e-9)
                 for r in part_a.values())
    metrics: dict[str, Any] = {"closed_form_held": a_held}
    for loss, r in part_a.items():
        metrics[f"{loss}.sqrt_over_isotropic"] = r["ratio_to_isotropic"]["sqrt-gradcov"]
        metrics[f"{loss}.closed_form_sqrt_over_isotropic"] = r["closed_form_sqrt_ratio"]
        metrics[f"{loss}.max_relative_error"] = max(r["relative_error"].values())
        metrics[f"{loss}.estimated_completed_over_optimum"] = r["estimated_sqrt_over_optimum"]["completed"]
        metrics[f"{loss}.estimated_plain_over_optimum"] = r["estimated_sqrt_over_optimum"]["plain"]
        metrics[f"{loss}.isotropic_over_optimum"] = r["isotropic_over_optimum"]
        metrics[f"{loss}.monte_carlo_z_sqrt"] = r["monte_carlo"]["sqrt-gradcov"]["z"]
    equal_everywhere, lowest_everywhere = True, True
    for trace in setting.traces:
        rows = {r["shape"]: r for r in table.values() if r["trace"] == trace}
        losses = [r["train_loss"] for r in rows.values()]
        spread = max(losses) / min(losses) - 1
        best = min(rows, key=lambda s: rows[s]["bound"])
        others = [r["bound"] for s, r in rows.items() if s != "sqrt-gradcov"]
        key = f"trace{trace:g}"
        metrics[f"{key}.train_loss_spread"] = spread
        metrics[f"{key}.lowest_bound_shape"] = best
        metrics[f"{key}.sqrt_bound"] = rows["sqrt-gradcov"]["bound"]
        metrics[f"{key}.isotropic_bound"] = rows["isotropic"]["bound"]
        metrics[f"{key}.sqrt_over_isotropic_bound"] = rows["sqrt-gradcov"]["bound"] / rows["isotropic"]["bound"]
        metrics[f"{key}.sqrt_over_next_best_bound"] = rows["sqrt-gradcov"]["bound"] / min(others)
        metrics[f"{key}.sqrt_over_isotropic_information"] = (rows["sqrt-gradcov"]["information"]
                                                              / rows["isotropic"]["information"])
        for s, r in rows.items():
            metrics[f"{key}.{s}.bound"] = r["bound"]
            metrics[f"{key}.{s}.gap"] = r["gap"]
            metrics[f"{key}.{s}.train_loss"] = r["train_loss"]
        equal_everywhere &= spread <= LOSS_SPREAD
        lowest_everywhere &= best == "sqrt-gradcov"
    metrics["equal_training_loss"] = equal_everywhere
    metrics["sqrt_lowest_everywhere"] = lowest_everywhere
    if not a_held or (equal_everywhere and not lowest_everywhere):
        verdict = "did not hold"
    elif not equal_everywhere:
        verdict = "inconclusive"
    else:
        verdict = "held"
    metrics["ab.verdict"] = verdict
    if part_c is not None:
        c_metrics, c_verdict = _cmi_verdict(part_c)
        metrics.update(c_metrics)
        verdicts = (verdict, c_verdict)
        verdict = ("did not hold" if "did not hold" in verdicts else
                   "held" if all(v == "held" for v in verdicts) else "inconclusive")
    return metrics, verdict


def _plot_bounds(out: Path, table: dict, setting: SGLDNoiseSetting) -> str:
    from genlab.report.figures import pyplot, save_figure

    plt = pyplot()
    traces = list(setting.traces)
    fig, axes = plt.subplots(1, len(traces), figsize=(5.5 * len(traces), 4), squeeze=False)
    for ax, trace in zip(axes[0], traces):
        rows = [r for r in table.values() if r["trace"] == trace]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["bound"] for r in rows], 0.4, label="bound on E[0-1 gap]")
        ax.bar(x + 0.2, [max(r["gap"], 1e-4) for r in rows], 0.4, label="measured 0-1 gap")
        ax.set_xticks(x, [r["shape"] for r in rows])
        ax.set_yscale("log")
        ax.set(title=f"trace {trace:g}: bound vs measured gap", ylabel="0-1 error gap")
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y", which="both")
    return str(save_figure(fig, out / "figures" / "bounds.png").relative_to(out))


def _plot_information(out: Path, runs: dict, setting: SGLDNoiseSetting) -> str:
    from genlab.report.figures import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    colors = dict(zip(setting.shapes, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    styles = dict(zip(setting.traces, ("-", "--", ":", "-.")))
    for name, run in runs.items():
        pts = [(r["step"], r["sgld_information"]) for r in run.metrics if "sgld_information" in r and r["step"]]
        if pts:
            steps, info = zip(*pts)
            ax.plot(steps, info, marker=".", color=colors[run.config.optimizer.sgld_noise],
                    ls=styles.get(run.config.optimizer.noise_trace, "-"), label=name)
    ax.set(xlabel="step", ylabel="accounted information I (nats)", title="SGLD: KL sum along the run")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return str(save_figure(fig, out / "figures" / "information.png").relative_to(out))


def _plot_cmi(out: Path, table: dict, part: CMIPart) -> str:
    """Part (c): each shape's bound on the expected test error (95% upper limit as a whisker) beside the measured
    test error, and each seed's information."""
    from genlab.report.figures import pyplot, save_figure

    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    shapes = list(table)
    x = np.arange(len(shapes))
    sharp = "test_error_bound_sharp" in table[shapes[0]]  # one bound pair: the tightest valid form
    key = "test_error_bound_sharp" if sharp else "test_error_bound"
    bound = np.array([table[s][key] for s in shapes])
    upper = np.array([table[s][key + "_upper"] if table[s][key + "_upper"] is not None else table[s][key]
                      for s in shapes])
    ax.bar(x - 0.2, bound, 0.4, yerr=[np.zeros_like(bound), upper - bound], capsize=3,
           label=("sharpened " if sharp else "") + "bound on E[test error] (whisker: 95% upper limit)")
    if sharp:
        ax.scatter(x - 0.2, [table[s]["test_error_bound"] for s in shapes], marker="_", s=300, color="k",
                   zorder=3, label="Haghifam et al.'s stated form E[train error] + sqrt(2 E[I])")
    ax.bar(x + 0.2, [table[s]["test_error_mean"] for s in shapes], 0.4, label="measured test error")
    ax.bar(x - 0.2, [table[s]["train_error_mean"] for s in shapes], 0.4, fill=False, hatch="//",
           label="its train-error part")
    ax.set_xticks(x, shapes)
    ax.set(ylabel="0-1 error", title=f"CMI bound, {part.dataset} n={part.n_train}, trace {part.trace:g}, "
                                     f"{part.seeds} seeds")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    for i, s in enumerate(shapes):
        ax2.scatter(np.full(len(table[s]["runs"]), i), [r["information"] for r in table[s]["runs"]], s=14)
    ax2.set_xticks(x, shapes)
    ax2.set_yscale("log")
    ax2.set(ylabel="I per run (nats)", title="accounted KL sum per seed")
    ax2.grid(alpha=0.3, axis="y", which="both")
    return str(save_figure(fig, out / "figures" / "cmi-bounds.png").relative_to(out))
