"""Sharpness tracking during training (Cohen et al. 2021's edge-of-stability measurements).

:class:`SharpnessTracker` is a training callback: every ``every`` steps (and at
the first and last step) it takes the top Hessian eigenvalue(s) of the full
training loss by Lanczos, warm-started from the previous eigenvectors, and
records it next to the optimizer's stability threshold:

* GD / SGD with heavy-ball momentum ``beta``: sharpness vs ``(2 + 2 beta) / lr``
  (``2 / lr`` for plain GD);
* Adam: the preconditioned sharpness ``lambda_max(P^-1 H)`` with
  ``P = (1 - beta1^t) diag(sqrt(v_hat) + eps)`` vs ``(2 + 2 beta1) / ((1 - beta1) lr)``
  (Cohen et al. 2022, "Adaptive gradient methods at the edge of stability");
* any optimizer with a ``stability_threshold()`` method (and optionally
  ``preconditioner()`` returning the diagonal of ``P`` flat): what it says.

Metrics written (per measurement): ``sharpness``, ``eigenvalues`` (top-k),
``sharpness_hvps``, ``sharpness_residual``, ``stability_threshold`` (of the raw sharpness; ``None`` for adaptive
methods),
``grad_norm`` and ``grad_projections`` (``(g . u_i)^2`` for the top eigenvectors,
which the variational-learning threshold needs), and for variational GD ``vl_threshold`` and ``vl_z``
(:meth:`genlab.optim.ivon.VariationalGD.variational_threshold`); optionally ``hessian_trace``,
Jacobian norm summaries and ``gradcov_trace``; for Adam and IVON
``preconditioned_sharpness`` and ``preconditioned_threshold`` (its threshold).

The warm-start vectors live in memory only: after a resume the first
measurement starts cold (same values to ``tol``, more products).

In a plain PyTorch loop (no run directory)::

    tracker = SharpnessTracker(objective, every=25)
    for step in range(steps):
        ...; optimizer.step()
        tracker.after_step(optimizer)        # measures at steps 25, 50, ...; returns the record or None
    tracker.history                          # [{"step": 25, "sharpness": ..., ...}, ...]
"""

from __future__ import annotations

import math
from typing import Any

import torch

from genlab.curvature.gradcov import gradient_covariance
from genlab.curvature.jacobian import jacobian_norms
from genlab.curvature.lanczos import lanczos
from genlab.curvature.operators import HessianOperator, PreconditionedOperator
from genlab.curvature.trace import hutchpp
from genlab.seeding import keyed_generator
from genlab.objective import Objective
from genlab.train.callbacks import Callback, TrainState
from genlab.train.plugins import BuildContext, register_plugin_factory


def stability_threshold(optimizer: torch.optim.Optimizer) -> float:
    """The threshold of the *raw* sharpness ``lambda_max(H)``: above it the optimizer's quadratic model
    diverges. GD/SGD: ``(2 + 2 beta) / lr`` (heavy-ball momentum ``beta``); an optimizer's own
    ``stability_threshold()`` when it has no preconditioner (variational GD: ``2 / lr``). ``nan`` for adaptive
    methods, whose threshold is on the preconditioned sharpness (:func:`preconditioned_threshold`)."""
    if hasattr(optimizer, "preconditioner") or isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return math.nan
    if hasattr(optimizer, "stability_threshold"):
        return float(optimizer.stability_threshold())
    group = optimizer.param_groups[0]
    if isinstance(optimizer, torch.optim.SGD) and not group.get("nesterov"):
        return (2 + 2 * float(group.get("momentum", 0.0))) / float(group["lr"])
    return math.nan


def preconditioned_threshold(optimizer: torch.optim.Optimizer) -> float:
    """The threshold of the preconditioned sharpness ``lambda_max(P^-1 H)`` of an adaptive method: Adam's
    ``(2 + 2 beta1) / ((1 - beta1) lr)`` (Cohen et al. 2022), or the optimizer's own ``stability_threshold()``
    when it has a ``preconditioner()`` (IVON); ``nan`` for the others."""
    if hasattr(optimizer, "preconditioner") and hasattr(optimizer, "stability_threshold"):
        return float(optimizer.stability_threshold())
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        group = optimizer.param_groups[0]
        b1 = float(group["betas"][0])
        return (2 + 2 * b1) / ((1 - b1) * float(group["lr"]))
    return math.nan


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def adaptive_preconditioner(optimizer: torch.optim.Optimizer) -> torch.Tensor | None:
    """Diagonal of the preconditioner ``P`` of the last step, flat in parameter order (``None`` if none).

    Adam's step is ``-lr m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - beta1^t)``;
    written as ``-lr P^-1 m`` this is ``P = (1 - beta1^t) (sqrt(v_hat) + eps)``.
    """
    if hasattr(optimizer, "preconditioner"):
        return optimizer.preconditioner()
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return None
    parts = []
    for group in optimizer.param_groups:
        b1, b2 = group["betas"]
        for p in group["params"]:
            st = optimizer.state.get(p)
            if not st or "exp_avg_sq" not in st:
                return None
            t = float(st["step"])
            v_hat = st["exp_avg_sq"] / (1 - b2 ** t)
            parts.append(((1 - b1 ** t) * (v_hat.sqrt() + group["eps"])).reshape(-1))
    return torch.cat(parts)


class SharpnessTracker(Callback):
    """Records the top Hessian eigenvalue(s) every ``every`` steps, warm-started (see module docstring).

    Args:
        every: steps between measurements (also measured at step 0 and the last step).
        top_k: eigenvalues to track.
        tol: relative accuracy of the eigenvalues (Lanczos stopping rule).
        error: ``"gap"`` (default): on warm-started measurements stop when the a-posteriori
            error estimate (``min(r, r^2/gap)``, see :func:`lanczos`) is below ``tol``, and the
            first (cold) measurement uses the residual; ``"residual"``: always the residual
            (the classical bound, at about twice the products).
        max_iter: most Hessian-vector products per measurement.
        min_iter: fewest products per measurement (default 4: a warm start can sit on last step's top
            direction while a new one overtakes it; with 4 the estimate held to 1.05e-4 against float64
            references over 60 measurements through sharpening and the edge of stability).
        trace_matvecs: if > 0, also a Hutch++ estimate of the Hessian trace with this many products.
        jacobian: also the input-output Jacobian norms over the training set.
        gradcov: also the trace of the per-sample gradient covariance (``n x d`` memory).
        subset: measure on the first ``subset`` training points instead of all.

    Built as ``SharpnessTracker(objective, every=N)`` it measures on that Objective (a plain loop, or a fit()
    run whose training loader shuffles: give the tracker a fixed-order loader over the same data).
    """

    state_key = "sharpness"
    resumable_settings = ("every", "top_k", "tol", "max_iter", "trace_matvecs", "jacobian", "gradcov", "subset",
                          "error", "min_iter")  # it measures; it never changes the trajectory

    def __init__(self, *args: int | Objective, every: int | None = None, top_k: int = 1, tol: float = 1e-4,
                 max_iter: int = 100, trace_matvecs: int = 0, jacobian: bool = False, gradcov: bool = False,
                 subset: int | None = None, error: str = "gap", min_iter: int = 4, seed: int = 0):
        # SharpnessTracker(objective, every=25) in a plain loop; SharpnessTracker(25) as a fit() plugin
        self.objective: Objective | None = None
        for arg in args:
            if isinstance(arg, Objective) and self.objective is None:
                self.objective = arg
            elif isinstance(arg, int) and every is None:
                every = arg
            else:
                raise TypeError("SharpnessTracker(every, ...) or SharpnessTracker(objective, every=N, ...)")
        if every is None:
            raise ValueError("SharpnessTracker: give every (steps between measurements)")
        if every < 1 or top_k < 1:
            raise ValueError("every and top_k must be >= 1")
        self.every, self.top_k, self.tol, self.max_iter = int(every), int(top_k), float(tol), int(max_iter)
        self.trace_matvecs, self.jacobian, self.gradcov, self.subset = int(trace_matvecs), jacobian, gradcov, subset
        self.error, self.min_iter = error, int(min_iter)
        self._vectors: torch.Tensor | None = None
        self._pre_vectors: torch.Tensor | None = None
        self.measurements = 0
        self.total_hvps = 0
        self.seed = seed
        self.history: list[dict[str, Any]] = []
        self._steps = 0

    def settings(self) -> dict[str, Any]:
        return {"every": self.every, "top_k": self.top_k, "tol": self.tol, "max_iter": self.max_iter,
                "trace_matvecs": self.trace_matvecs, "jacobian": self.jacobian, "gradcov": self.gradcov,
                "subset": self.subset, "error": self.error, "min_iter": self.min_iter}

    # ---------------------------------------------------------- a plain loop
    def after_step(self, optimizer: torch.optim.Optimizer, step: int | None = None) -> dict[str, Any] | None:
        """In your own loop, after ``optimizer.step()``: count the step (or take ``step``, 1-based) and measure
        every ``every`` steps; returns the measurement (also appended to :attr:`history`) or ``None``."""
        if self.objective is None:
            raise ValueError("after_step needs the tracker built as SharpnessTracker(objective, every=N)")
        self._steps = self._steps + 1 if step is None else int(step)
        if self._steps % self.every != 0:
            return None
        state = TrainState(model=self.objective.model, optimizer=optimizer, objective=self.objective,
                           seed=self.seed, step=self._steps)
        record = {"step": self._steps, **self.measure(state)}
        self.history.append(record)
        return record

    # -------------------------------------------------------------- callbacks
    def on_train_start(self, state: TrainState, resumed: bool) -> None:
        if not resumed:
            self.measure(state)

    def on_step_end(self, state: TrainState) -> None:
        if state.step % self.every == 0 or state.step == state.total_steps:
            self.measure(state)

    def state_dict(self) -> dict[str, Any]:
        return {"measurements": self.measurements, "total_hvps": self.total_hvps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.measurements = int(state.get("measurements", 0))
        self.total_hvps = int(state.get("total_hvps", 0))

    # ------------------------------------------------------------ measuring
    def _generator(self, state: TrainState) -> torch.Generator:
        return keyed_generator(state.seed, state.step, 7)

    def measure(self, state: TrainState) -> dict[str, Any]:
        """Take one measurement now and add it to ``state.metrics``; returns what was added."""
        obj = self.objective if self.objective is not None else state.objective
        indices = None if self.subset is None else torch.arange(min(self.subset, obj.n))
        H = HessianOperator(obj, indices=indices)
        gen = self._generator(state)
        v0 = self._vectors
        if v0 is not None:  # a little noise keeps the Krylov space from missing a new top direction
            v0 = v0.sum(dim=1)
            v0 = v0 / v0.norm() + 1e-3 * torch.randn(H.dim, generator=gen, dtype=torch.float64).to(v0)
        # the gap estimate trusts the Ritz gap, which a cold start's small Krylov space can over-estimate (an
        # unresolved close pair); it is used only when warm-started from the last top direction
        error = self.error if v0 is not None else "residual"
        res = lanczos(H, self.top_k, tol=self.tol, max_iter=self.max_iter, v0=v0, generator=gen, error=error,
                      min_iter=self.min_iter)
        self._vectors = res.eigenvectors
        out: dict[str, Any] = {
            "sharpness": float(res.eigenvalues[0]),
            "sharpness_hvps": res.matvecs,
            "sharpness_residual": max(res.residuals) if res.residuals else math.nan,
            "sharpness_converged": res.converged,
            "stability_threshold": _finite_or_none(stability_threshold(state.optimizer)),
        }
        if self.top_k > 1:
            out["eigenvalues"] = [float(x) for x in res.eigenvalues]
        if H.gradient is not None:
            g = H.gradient
            out["grad_norm"] = float(g.norm())
            out["grad_projections"] = [float(torch.dot(g, u)) ** 2 for u in res.eigenvectors.T]
            if hasattr(state.optimizer, "variational_threshold"):  # variational GD (genlab.optim.ivon)
                out["vl_threshold"], out["vl_z"] = state.optimizer.variational_threshold(
                    res.eigenvectors[:, 0], out["grad_projections"][0])
        p_diag = adaptive_preconditioner(state.optimizer)
        if p_diag is not None:
            pre = lanczos(PreconditionedOperator(H, p_diag.to(H.dtype)), 1, tol=self.tol, max_iter=self.max_iter,
                          v0=self._pre_vectors, generator=gen, min_iter=self.min_iter,
                          error=self.error if self._pre_vectors is not None else "residual")
            self._pre_vectors = pre.eigenvectors
            out["preconditioned_sharpness"] = float(pre.eigenvalues[0])
            out["preconditioned_hvps"] = pre.matvecs
            out["preconditioned_threshold"] = _finite_or_none(preconditioned_threshold(state.optimizer))
        if self.trace_matvecs > 0:
            out["hessian_trace"] = hutchpp(H, self.trace_matvecs, generator=gen).value
        H.release()
        if self.jacobian:
            out.update(jacobian_norms(obj).summary())
        if self.gradcov:
            out["gradcov_trace"] = gradient_covariance(obj, top_k=1, indices=indices).trace
        self.measurements += 1
        self.total_hvps += res.matvecs
        state.metrics.update(out)
        return out


def _tracker_plugins(ctx: BuildContext) -> list[Callback]:
    t = ctx.config.plugins.tracking
    if t.track_sharpness is None:
        return []
    return [SharpnessTracker(t.track_sharpness, top_k=t.track_top_k, trace_matvecs=t.track_trace,
                             jacobian=t.track_jacobian)]


register_plugin_factory("sharpness", _tracker_plugins, order=20)
