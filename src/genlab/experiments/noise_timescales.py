"""``genlab reproduce noise-timescales``: noise near a zero-loss manifold, its limiting flow and its clock.

Claim (Shalova, Schlichting & Peletier 2024; label noise as in Blanc et al. 2020, Damian et al. 2021, Li, Wang
& Arora 2022): started on a manifold of zero-loss minimisers, gradient descent with injected noise drifts along
the manifold; label noise follows the gradient flow of ``tr H`` on the clock ``lr^2 sigma^2 t``, DropConnect
the gradient flow of its regulariser on the clock ``lr sigma^2 t``, and mini-batch noise does not move it.

Setting: the diagonal linear network ``f(x) = <u * v, x>`` (``genlab`` model ``diagonal-linear``), ``d = 100``,
``n = 40`` points of ``sparse-regression`` (``x ~ N(0, I)``, 5-sparse ``w*``, noise-free labels) with the
loss ``L = (1/n) sum_i 1/2 (f(x_i) - y_i)^2``. Its zero-loss set ``{X (u * v) = y}`` is a manifold of dimension
``2d - n``. Every run starts at the same point of it: ``w0`` = the minimum-norm interpolant plus a fixed
null-space vector, ``u0 = sign(w0) sqrt|w0|``, ``v0 = sqrt|w0|``. Steps are the library's own:
:func:`genlab.train.noise_injection.noisy_gradient` (the training loop's step) then ``theta -= lr * grad``, in
float64, full batch for label noise and DropConnect, mini-batches of ``batch_size`` for SGD.

What we derive and implement (the papers' statements in this model's terms; see the README for the reading):

* Label noise ``y_i + sigma eps_i`` adds gradient noise of covariance ``c H`` with ``c = sigma^2 / n`` and
  ``H = (1/n) sum_i grad f_i grad f_i^T`` (the Hessian on the manifold). Li, Wang & Arora's limit for noise
  covariance ``c H`` is ``d theta / dt = -(c / 4) P_T grad tr H`` in ``t = lr^2 steps`` (the one-dimensional
  check: the normal coordinate's stationary variance ``lr c / 2`` times the drift ``-lr H' / 2``). So in the clock
  ``tau = lr^2 sigma^2 steps``: ``d theta / d tau = -1/(4n) P_T grad tr H``, with
  ``tr H = (1/n) sum_ij x_ij^2 (u_j^2 + v_j^2)``.
* DropConnect (``genlab``'s ``--noise dropconnect``: every parameter multiplied by an independent mask of mean 1,
  drop rate ``p``) gives ``E_m L(theta * m) = L(theta) + s R(theta)`` exactly, with
  ``R = (1/2n) sum_ij x_ij^2 u_j^2 v_j^2`` and ``s = 1/(1-p)^2 - 1`` the variance of the product of two masks:
  ``sigma^2 = s``. The mean gradient's bias ``s grad R`` drives the drift: in ``tau = lr s steps``,
  ``d theta / d tau = -P_T grad R``.
* ``P_T`` is the orthogonal projection onto the manifold's tangent space (``null`` of the constraint Jacobian
  ``J = X [diag(v), diag(u)]``). The limiting flows are integrated by explicit Euler in ``tau`` with a Newton
  retraction onto the manifold after each step (:func:`limiting_flow`).

Verdict rules (fixed before running). For each noise, the runs' tracked quantity (``tr H`` for label noise,
``R`` for DropConnect), as a fraction of the change the limiting flow makes over the plotted range, is compared
on a common grid of each clock: the runs *collapse* on a clock when the largest difference between any two runs
is at most ``COLLAPSE_TOL`` of that change; they are *apart* on a clock when it is at least ``APART_TOL``. The
runs are chosen so the two clocks disagree (equal ``lr sigma`` for label noise, equal ``lr sigma^2`` for
DropConnect, ``lr`` varied 4x). ``held``: label noise collapses on ``lr^2 sigma^2`` and is apart on
``lr sigma^2``; DropConnect collapses on ``lr sigma^2`` and is apart on ``lr^2 sigma^2``; each follows its
limiting flow within ``FLOW_TOL``; mini-batch SGD changes ``tr H`` and ``R`` by less than ``STAY_TOL``
(relative) over the longest run. ``did not hold``: a collapse happens on the wrong clock or SGD moves;
``inconclusive``: anything else (e.g. too few steps to separate the clocks).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from genlab.experiments.results import ReproductionResult, choose_setting, write_results

CLAIM = ("Near a manifold of zero-loss minimisers, label noise moves the weights along the gradient flow of tr H "
         "on the clock lr^2 sigma^2 t, DropConnect along the flow of its regulariser on the clock lr sigma^2 t, and "
         "mini-batch noise leaves them in place (Shalova, Schlichting & Peletier 2024).")
COLLAPSE_TOL = 0.10
APART_TOL = 0.25
FLOW_TOL = 0.15
STAY_TOL = 1e-3
CLOCKS = ("lr^2 sigma^2", "lr sigma^2")


@dataclass(frozen=True)
class TimescaleSetting:
    """The runs: ``(lr, sigma)`` per noise, the clock lengths ``tau`` to cover, and SGD's ``(lr, batch)``."""

    label: tuple[tuple[float, float], ...]        # (lr, sigma): equal lr * sigma
    dropconnect: tuple[tuple[float, float], ...]  # (lr, s = sigma^2): equal lr * s
    minibatch: tuple[tuple[float, int], ...]      # (lr, batch size)
    label_tau: float
    dropconnect_tau: float
    minibatch_steps: int
    records: int = 200
    d: int = 100
    n: int = 40
    k: int = 5
    seed: int = 0
    expected_minutes: float = 0.0


SETTINGS = {
    "quick": TimescaleSetting(label=((0.1, 1.0), (0.05, 2.0), (0.025, 4.0)),
                              dropconnect=((0.02, 0.05), (0.01, 0.1), (0.005, 0.2)),
                              minibatch=((0.1, 10), (0.025, 5)), label_tau=60.0, dropconnect_tau=4.0,
                              minibatch_steps=6000, expected_minutes=1),
    "full": TimescaleSetting(label=((0.05, 1.0), (0.025, 2.0), (0.0125, 4.0)),
                             dropconnect=((0.01, 0.05), (0.005, 0.1), (0.0025, 0.2)),
                             minibatch=((0.1, 10), (0.025, 5)), label_tau=60.0, dropconnect_tau=4.0,
                             minibatch_steps=24000, expected_minutes=3),
}


def drop_rate(s: float) -> float:
    """The DropConnect drop rate ``p`` whose two-mask product has variance ``s = 1/(1-p)^2 - 1``."""
    return 1 - 1 / math.sqrt(1 + s)


class DiagonalProblem:
    """The data, the manifold and the closed forms of ``tr H`` and ``R`` for the diagonal linear network."""

    def __init__(self, setting: TimescaleSetting):
        from genlab.data import load_dataset

        data = load_dataset("sparse-regression", options={"input_dim": setting.d, "k": setting.k,
                                                           "n_train": setting.n, "noise": 0.0,
                                                           "seed": setting.seed})
        self.data = data
        self.X = data.x_train.double()
        self.y = data.y_train.double().flatten()
        self.n, self.d = self.X.shape
        self.x2 = self.X.pow(2)

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return theta[:self.d], theta[self.d:]

    def trace_hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """``tr H = (1/n) sum_ij x_ij^2 (u_j^2 + v_j^2)``: the Gauss-Newton trace, = ``tr hess L`` at zero loss."""
        u, v = self.split(theta)
        return (self.x2 @ (u * u + v * v)).sum() / self.n

    def dropconnect_regulariser(self, theta: torch.Tensor) -> torch.Tensor:
        """``R = (1/2n) sum_ij x_ij^2 u_j^2 v_j^2``: ``E_m L(theta * m) = L + s R``."""
        u, v = self.split(theta)
        return (self.x2 @ (u * v).pow(2)).sum() / (2 * self.n)

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        u, v = self.split(theta)
        return 0.5 * (self.X @ (u * v) - self.y).pow(2).mean()

    def constraint_jacobian(self, theta: torch.Tensor) -> torch.Tensor:
        u, v = self.split(theta)
        return torch.cat([self.X * v, self.X * u], dim=1)  # d (X (u*v)) / d (u, v): n x 2d

    def retract(self, theta: torch.Tensor, iterations: int = 20) -> torch.Tensor:
        """Newton (minimum-norm) steps back onto ``X (u * v) = y``."""
        for _ in range(iterations):
            u, v = self.split(theta)
            r = self.X @ (u * v) - self.y
            if float(r.abs().max()) < 1e-13:
                break
            J = self.constraint_jacobian(theta)
            theta = theta - J.T @ torch.linalg.solve(J @ J.T, r)
        return theta

    def project_tangent(self, theta: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        J = self.constraint_jacobian(theta)
        return g - J.T @ torch.linalg.solve(J @ J.T, J @ g)

    def start(self) -> torch.Tensor:
        """The common starting point on the manifold (module docstring)."""
        gen = torch.Generator().manual_seed(1000 + 0)
        w = torch.linalg.pinv(self.X) @ self.y
        z = torch.randn(self.d, generator=gen, dtype=torch.float64)
        z = z - torch.linalg.pinv(self.X) @ (self.X @ z)  # null-space direction
        w = w + 0.5 * z / z.norm() * w.norm()
        theta = torch.cat([torch.sign(w) * w.abs().sqrt(), w.abs().sqrt()])
        return self.retract(theta)


def limiting_flow(problem: DiagonalProblem, regulariser: Callable[[torch.Tensor], torch.Tensor], scale: float,
                  theta0: torch.Tensor, tau_end: float, steps: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Integrate ``d theta / d tau = -scale P_T grad regulariser`` on the manifold; returns ``(tau, value)``."""
    theta = theta0.clone()
    dt = tau_end / steps
    taus, values = [0.0], [float(regulariser(theta))]
    for i in range(steps):
        t = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(regulariser(t), t)
        theta = problem.retract(theta - dt * scale * problem.project_tangent(theta, g))
        taus.append((i + 1) * dt)
        values.append(float(regulariser(theta)))
    return np.array(taus), np.array(values)


def simulate(problem: DiagonalProblem, kind: str, lr: float, sigma: float, steps: int, records: int,
             seed: int, batch_size: int | None = None) -> dict[str, np.ndarray]:
    """One noisy run with the library's step from the common start; records ``tr H``, ``R`` and the loss.

    ``kind``: ``label`` (``sigma`` the label-noise std), ``dropconnect`` (``sigma`` the drop rate) or
    ``minibatch`` (plain SGD on ``batch_size`` points drawn afresh each step; ``sigma`` unused).
    """
    from genlab.models import build_model
    from genlab.objective import Objective
    from genlab.seeding import keyed_generator
    from genlab.train.noise_injection import noisy_gradient

    model = build_model("diagonal-linear", (problem.d,), 1).double()
    with torch.no_grad():
        u0, v0 = problem.split(problem.start())
        model.u.copy_(u0.unsqueeze(0))
        model.v.copy_(v0.unsqueeze(0))
    objective = Objective(model, problem.X, problem.y.unsqueeze(1), loss="mse")
    every = max(steps // records, 1)
    out: dict[str, list] = {"step": [], "trace_hessian": [], "regulariser": [], "loss": [], "distance": []}

    def record(step: int) -> None:
        # the tracked quantities are read at the iterate's projection onto the manifold: a constant push (the
        # DropConnect bias s grad R) holds the iterate O(s / lambda_min) off the manifold, and R at the
        # displaced point would show that offset as if it were drift
        theta = torch.cat([model.u.detach().flatten(), model.v.detach().flatten()])
        on = problem.retract(theta)
        out["step"].append(step)
        out["trace_hessian"].append(float(problem.trace_hessian(on)))
        out["regulariser"].append(float(problem.dropconnect_regulariser(on)))
        out["loss"].append(float(problem.loss(theta)))
        out["distance"].append(float((theta - on).norm()))

    record(0)
    noise = "none" if kind == "minibatch" else kind
    params = [model.u, model.v]
    for step in range(steps):
        for p in params:
            p.grad = None
        indices = None
        if kind == "minibatch":
            indices = torch.randperm(problem.n, generator=keyed_generator(seed, step, 5))[:batch_size]
        noisy_gradient(noise, sigma, objective, indices, seed=seed, step=step)
        with torch.no_grad():
            for p in params:
                p.sub_(lr * p.grad)
        if (step + 1) % every == 0 or step + 1 == steps:
            record(step + 1)
    return {k: np.array(v) for k, v in out.items()}


def clock_factor(clock: str, lr: float, variance: float) -> float:
    """Clock time per step: ``lr^2 sigma^2`` or ``lr sigma^2`` (``variance`` = ``sigma^2``)."""
    return lr * lr * variance if clock == CLOCKS[0] else lr * variance


def spread_on_clock(runs: list[dict], key: str, clock: str, scale: float, points: int = 60) -> float:
    """Largest difference between any two runs' ``key`` on a common grid of ``clock``, over ``scale``."""
    taus = [r["step"] * clock_factor(clock, r["lr"], r["variance"]) for r in runs]
    grid = np.linspace(0, min(t[-1] for t in taus), points)
    curves = np.array([np.interp(grid, t, r[key]) for t, r in zip(taus, runs)])
    return float((curves.max(axis=0) - curves.min(axis=0)).max() / scale)


def flow_deviation(runs: list[dict], key: str, clock: str, flow: tuple[np.ndarray, np.ndarray],
                   scale: float) -> float:
    """Largest ``|run - limiting flow|`` over the runs, on ``clock``, over ``scale``."""
    worst = 0.0
    for r in runs:
        tau = r["step"] * clock_factor(clock, r["lr"], r["variance"])
        keep = tau <= flow[0][-1]
        worst = max(worst, float(np.abs(r[key][keep] - np.interp(tau[keep], *flow)).max()))
    return worst / scale


def reproduce(out: str | Path, quick: bool = False, quiet: bool = False,
              setting: TimescaleSetting | None = None) -> ReproductionResult:
    """Run the reproduction into ``out`` and write ``out/results.json`` and figures (runs take seconds, so
    nothing is checkpointed). ``setting`` replaces the quick/full setting (tests use a tiny one)."""
    out = Path(out)
    name_of_setting, setting = choose_setting(SETTINGS, quick, setting)
    t0 = time.perf_counter()
    problem = DiagonalProblem(setting)
    theta0 = problem.start()
    flows = {"label": limiting_flow(problem, problem.trace_hessian, 1 / (4 * problem.n), theta0, setting.label_tau),
             "dropconnect": limiting_flow(problem, problem.dropconnect_regulariser, 1.0, theta0,
                                          setting.dropconnect_tau)}
    runs: dict[str, list[dict]] = {"label": [], "dropconnect": [], "minibatch": []}
    for lr, sigma in setting.label:
        steps = int(round(setting.label_tau / (lr * lr * sigma * sigma)))
        runs["label"].append(_run(problem, setting, "label", lr, sigma, sigma * sigma, steps, quiet))
    for lr, var in setting.dropconnect:
        steps = int(round(setting.dropconnect_tau / (lr * var)))
        runs["dropconnect"].append(_run(problem, setting, "dropconnect", lr, drop_rate(var), var, steps, quiet))
    for lr, batch in setting.minibatch:
        runs["minibatch"].append(_run(problem, setting, "minibatch", lr, 0.0, 0.0, setting.minibatch_steps, quiet,
                                      batch))
    metrics, verdict = _verdict(runs, flows)
    figures = [_plot_clocks(out, runs, flows), _plot_minibatch(out, runs["minibatch"])]
    result = ReproductionResult(
        name="noise-timescales", claim=CLAIM, verdict=verdict, metrics=metrics, figures=figures,
        details={"setting": name_of_setting, "d": problem.d, "n": problem.n, "k": setting.k, "seed": setting.seed,
                 "start": {"trace_hessian": float(problem.trace_hessian(theta0)),
                           "regulariser": float(problem.dropconnect_regulariser(theta0))},
                 "runs": {kind: [{k: v for k, v in r.items() if not isinstance(v, np.ndarray)} | {
                     "final_trace_hessian": float(r["trace_hessian"][-1]),
                     "final_regulariser": float(r["regulariser"][-1]), "max_loss": float(r["loss"].max()),
                     "max_distance": float(r["distance"].max())} for r in rs] for kind, rs in runs.items()},
                 "collapse_tol": COLLAPSE_TOL, "apart_tol": APART_TOL, "flow_tol": FLOW_TOL, "stay_tol": STAY_TOL,
                 "wall_time_s": time.perf_counter() - t0})
    write_results(out, result)
    return result


def _run(problem, setting, kind, lr, sigma, variance, steps, quiet, batch=None) -> dict:
    if not quiet:
        what = f"batch {batch}" if kind == "minibatch" else f"sigma^2 {variance:g}"
        print(f"noise-timescales: {kind} lr {lr:g} {what}: {steps} steps")
    r = simulate(problem, kind, lr, sigma, steps, setting.records, setting.seed, batch)
    return {**r, "kind": kind, "lr": lr, "sigma": sigma, "variance": variance, "steps": steps, "batch_size": batch}


def _verdict(runs: dict[str, list[dict]], flows: dict) -> tuple[dict[str, Any], str]:
    """The rules of the module docstring."""
    metrics: dict[str, Any] = {}
    right = {"label": CLOCKS[0], "dropconnect": CLOCKS[1]}
    keys = {"label": "trace_hessian", "dropconnect": "regulariser"}
    ok, wrong_collapse = True, False
    for kind in ("label", "dropconnect"):
        key, value = keys[kind], flows[kind][1]
        scale = abs(value[0] - value[-1])
        spreads = {c: spread_on_clock(runs[kind], key, c, scale) for c in CLOCKS}
        other = CLOCKS[1] if right[kind] == CLOCKS[0] else CLOCKS[0]
        dev = flow_deviation(runs[kind], key, right[kind], flows[kind], scale)
        metrics[f"{kind}.flow_change"] = scale
        metrics[f"{kind}.spread_right_clock"] = spreads[right[kind]]
        metrics[f"{kind}.spread_other_clock"] = spreads[other]
        metrics[f"{kind}.flow_deviation"] = dev
        metrics[f"{kind}.collapses_on"] = [c for c in CLOCKS if spreads[c] <= COLLAPSE_TOL]
        ok &= spreads[right[kind]] <= COLLAPSE_TOL and spreads[other] >= APART_TOL and dev <= FLOW_TOL
        wrong_collapse |= spreads[other] <= COLLAPSE_TOL and spreads[right[kind]] > COLLAPSE_TOL
    moves = []
    for r in runs["minibatch"]:
        for key in ("trace_hessian", "regulariser"):
            moves.append(float(np.abs(r[key] / r[key][0] - 1).max()))
    metrics["minibatch.max_relative_change"] = max(moves)
    stays = max(moves) < STAY_TOL
    metrics["minibatch.stays"] = stays
    if ok and stays:
        verdict = "held"
    elif wrong_collapse or not stays:
        verdict = "did not hold"
    else:
        verdict = "inconclusive"
    return metrics, verdict


def _plot_clocks(out: Path, runs: dict, flows: dict) -> str:
    from genlab.report.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    rows = (("label", "trace_hessian", "label noise: tr H", CLOCKS[0]),
            ("dropconnect", "regulariser", "DropConnect: R", CLOCKS[1]))
    for (kind, key, label, right), row in zip(rows, axes):
        for clock, ax in zip(CLOCKS, row):
            for r in runs[kind]:
                tau = r["step"] * clock_factor(clock, r["lr"], r["variance"])
                ax.plot(tau, r[key], lw=1.2, label=f"lr {r['lr']:g}, sigma^2 {r['variance']:g}")
            if clock == right:
                ax.plot(*flows[kind], "k--", lw=1.5, label="limiting flow")
            ax.set(xlabel=f"steps x {clock}", ylabel=label, title=f"{label} on the clock {clock}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return str(save_figure(fig, out / "figures" / "clocks.png").relative_to(out))


def _plot_minibatch(out: Path, runs: list[dict]) -> str:
    from genlab.report.figures import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in runs:
        for key, ls in (("trace_hessian", "-"), ("regulariser", "--")):
            ax.plot(r["step"], np.abs(r[key] / r[key][0] - 1) + 1e-18, ls=ls,
                    label=f"{key}, lr {r['lr']:g}, batch {r['batch_size']}")
    ax.set(xlabel="step", ylabel="|relative change|", title="mini-batch SGD from the manifold")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return str(save_figure(fig, out / "figures" / "minibatch.png").relative_to(out))
