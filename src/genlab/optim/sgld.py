"""SGLD with structured noise and the trajectory bound of Wang et al. (NeurIPS 2021), accounted as it runs.

One step: ``W_t = W_{t-1} - lr g_t + xi_t``, ``xi_t ~ N(0, Sigma_t)``, with ``g_t`` the batch mean gradient
(``p.grad``, as any optimizer reads it) and ``Sigma_t`` built by :func:`~genlab.optim.noise.noise_covariance`
from the batch's per-sample gradients (passed to :meth:`SGLD.step`; the isotropic shape needs none).

Bound accounting. Chaining the KL divergence between the trajectory's Gaussian transition kernels and those
of a data-independent prior chain that moves by ``-lr mu_t`` (same ``Sigma_t``) gives

``I(S; W_T) <= sum_t (lr^2 / 2) (g_t - mu_t)^T Sigma_t^-1 (g_t - mu_t)``

(the expectation over the sample is estimated by the one run). When ``step`` is given ``prior_mean`` (``mu_t``,
flat), the term is added to the running ``info`` estimate; :func:`genlab.bounds.infotheory.information_bound` turns it into the
expected-generalization-gap bound ``sqrt(2 R^2 I / n)`` for an ``R``-sub-Gaussian loss. Which ``mu_t`` is used
(Wang et al. take the expected gradient, estimated on data the step did not use) is the caller's choice and
must be stated with the number.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from genlab.bounds.infotheory import information_bound, pair_sign_bound
from genlab.curvature.gradcov import stacked_per_sample_grads
from genlab.errors import ConfigError
from genlab.objective import Objective, params_to_vector
from genlab.optim.noise import SHAPES, noise_covariance
from genlab.seeding import keyed_generator
from genlab.settings.optimizers import SGLDSettings
from genlab.train.callbacks import Callback, TrainState
from genlab.train.optimizers import OptimizerSpec, register_optimizer
from genlab.train.plugins import BuildContext, register_plugin_factory


class SGLD(torch.optim.Optimizer):
    """Stochastic gradient Langevin dynamics with ``isotropic``, ``diagonal``, ``gradcov`` or ``sqrt-gradcov`` noise.

    Args:
        params: the parameters, or parameter groups sharing every setting (the noise covers all at once;
            list them in the model's parameter order, which the per-sample gradients follow).
        lr: step size.
        noise: the noise shape (see :mod:`genlab.optim.noise`).
        noise_trace: ``tr(Sigma_t)``, the total noise variance added per step (equal across shapes).
        floor: share of ``noise_trace`` spread isotropically so ``Sigma_t`` is invertible.
        seed: seed of the noise generator (its state is checkpointed with the optimizer).
        complete: complete the low-rank covariance estimate with its unseen variance
            (:func:`~genlab.optim.noise.noise_covariance`).

    ``step(per_sample_grads=G, prior_mean=mu)``: ``G`` is the ``(B, d)`` matrix of the batch's flat per-sample
    gradients (needed by every shape but ``isotropic``), ``mu`` the prior chain's drift for the bound (or
    ``prior_gap=g - mu`` directly).
    """

    needs_per_sample_grads = True

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, noise: str = "isotropic",
                 noise_trace: float = 1e-4, floor: float = 1e-3, seed: int = 0, complete: bool = True):
        if noise not in SHAPES:
            raise ValueError(f"noise must be one of {', '.join(SHAPES)}, not {noise!r}")
        if not lr > 0 or not noise_trace > 0:
            raise ValueError(f"lr and noise_trace must be > 0 (got {lr}, {noise_trace})")
        super().__init__(params, dict(lr=lr, noise=noise, noise_trace=noise_trace, floor=floor,
                                      complete=complete, info=0.0))
        for key in ("lr", "noise", "noise_trace", "floor", "complete"):  # one noise draw covers every group
            values = {repr(g[key]) for g in self.param_groups}
            if len(values) > 1:
                raise ValueError(f"SGLD: {key} must be the same in every parameter group (got {sorted(values)}); "
                                 f"the noise covariance and its accounting are over all parameters at once")
        self.generator = torch.Generator().manual_seed(int(seed))
        self.needs_per_sample_grads = noise != "isotropic"

    @property
    def info(self) -> float:
        """The running estimate of ``I(S; W_t)``: the sum of the accounted per-step KL terms (nats)."""
        return float(self.param_groups[0]["info"])

    def _params(self) -> list[torch.nn.Parameter]:
        """Every trainable parameter, group after group (the columns of the per-sample gradients)."""
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    @torch.no_grad()
    def step(self, closure=None, *, per_sample_grads: torch.Tensor | None = None,
             prior_mean: torch.Tensor | None = None, prior_gap: torch.Tensor | None = None):
        """One SGLD step from the current ``.grad``; returns the closure's loss if one was given.

        The bound term uses ``g - prior_mean``, or ``prior_gap`` (that difference computed directly, e.g. from the
        CMI bound's pairs, where subtracting two nearly equal full-batch means would lose its digits)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        params = self._params()
        g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        d = g.numel()
        if group["noise"] == "isotropic":
            G = g.unsqueeze(0)  # only its width matters
        elif per_sample_grads is None:
            raise ValueError(f"SGLD with {group['noise']!r} noise needs per_sample_grads (B x d) at each step")
        else:
            G = per_sample_grads.to(g.dtype)
            if G.dim() != 2 or G.shape[1] != d:
                raise ValueError(f"per_sample_grads must be (B, {d}), got {tuple(G.shape)}")
        cov = noise_covariance(group["noise"], G, group["noise_trace"], group["floor"],
                               group.get("complete", True))
        xi = cov.sample(d, self.generator).to(g.device)
        if prior_gap is not None or prior_mean is not None:
            diff = prior_gap.to(g) if prior_gap is not None else g - prior_mean.to(g)
            group["info"] += 0.5 * group["lr"] ** 2 * cov.inv_quad(diff)
        offset = 0
        for p in params:
            n = p.numel()
            grad = g[offset:offset + n].view_as(p)
            p.add_(-group["lr"] * grad + xi[offset:offset + n].view_as(p))
            offset += n
        return loss

    def state_dict(self):
        sd = super().state_dict()
        sd["generator"] = self.generator.get_state()
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        gen = state_dict.pop("generator", None)
        super().load_state_dict(state_dict)
        if gen is not None:
            self.generator.set_state(gen)


def _step_subset(seed: int, step: int, salt: int, n: int, size: int) -> torch.Tensor:
    """A batch of ``size`` indices out of ``n`` that depends on (seed, step, salt) alone (resumable)."""
    return torch.randperm(n, generator=keyed_generator(seed, step, salt))[:size]


def _prior_subset(prior_points: torch.Tensor, seed: int, step: int, salt: int, size: int) -> torch.Tensor:
    """``size`` points of ``S_J`` (the mask's True entries) that depend on (seed, step, salt) alone."""
    members = torch.nonzero(prior_points).flatten()
    return members[_step_subset(seed, step, salt, members.numel(), size)]


def prior_subset_mask(n: int, m: int, seed: int) -> torch.Tensor:
    """Negrea et al.'s ``J``: a uniformly random subset of ``m`` of the ``n`` training points, as a boolean mask,
    drawn from its own seeded stream (independent of the initialisation, the batches and the noise)."""
    if not 1 <= m < n:
        raise ValueError(f"sgld_prior_size must be in [1, n - 1] = [1, {n - 1}] (got {m})")
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=keyed_generator(seed, 0, 7))[:m]] = True
    return mask


class BoundPairs:
    """The CMI bound's ``k`` bound pairs (:mod:`genlab.data.supersample`): training position ``ghost_of[j]`` and
    row ``j`` of ``ghosts`` (an Objective on the members that did not train, same model) are one pair."""

    def __init__(self, ghosts: Objective, ghost_of: torch.Tensor, n: int):
        self.ghosts, self.ghost_of = ghosts, ghost_of.long()
        self.slot = torch.full((n,), -1, dtype=torch.long)  # training position -> its pair's row, or -1
        self.slot[self.ghost_of] = torch.arange(len(self.ghost_of))

    @property
    def k(self) -> int:
        return int(self.ghost_of.numel())

    def gap(self, objective: Objective, indices: torch.Tensor | None) -> torch.Tensor:
        """``g_t - mu_t`` on this step's batch (``indices``; ``None``: all): ``(1/2B) sum (grad member - grad ghost)``."""
        batch = indices if indices is not None else torch.arange(objective.n)
        paired = batch[self.slot[batch] >= 0]
        if paired.numel() == 0:
            return torch.zeros(objective.num_params(), device=objective.device, dtype=objective.dtype)
        members = params_to_vector(objective.grad(indices=paired))
        ghosts = params_to_vector(self.ghosts.grad(indices=self.slot[paired]))
        return (paired.numel() / (2 * batch.numel())) * (members - ghosts)

    def errors(self, objective: Objective) -> tuple[float | None, float | None]:
        """0-1 error of the current model on the pairs' training members and on their ghosts."""
        return error_rate(objective, self.ghost_of), error_rate(self.ghosts, torch.arange(self.k))


def check_train_equals_eval(objective: Objective, points: int = 8) -> None:
    """Refuse a model whose outputs differ between train and eval mode (dropout, BatchNorm).

    The CMI prior forecasts the step's gradient from eval-mode gradients of the pairs; that is the step's own
    gradient only when train mode computes the same function. Buffers are restored after the check."""
    idx = torch.arange(min(points, objective.n))
    saved = {k: v.clone() for k, v in objective.buffers().items()}
    was = objective.model.training
    with torch.no_grad():
        x, _ = next(iter(objective.chunks(idx)))
        with objective.eval_mode():
            ref = objective.forward(x)
        objective.model.train()
        out = objective.forward(x)
    objective.model.train(was)
    for k, v in objective.buffers().items():
        v.copy_(saved[k])
    if not torch.allclose(out, ref, rtol=1e-5, atol=1e-6):
        raise ConfigError("--sgld-bound cmi: the model computes differently in train and eval mode (dropout or "
                          "BatchNorm), so the prior's forecast would not be the step's gradient; use a model "
                          "without them (e.g. --model-option batchnorm=false) or --sgld-bound heldout|negrea")


def step_inputs(optimizer: SGLD, objective, heldout_objective, indices: torch.Tensor | None, *, batch_size: int,
                seed: int, step: int, bound: bool, cov: str = "heldout",
                cov_size: int | None = None, prior_points: torch.Tensor | None = None,
                pairs: BoundPairs | None = None) -> dict[str, torch.Tensor]:
    """What :meth:`SGLD.step` needs besides ``.grad``, as the training loop computes it.

    ``heldout_objective`` holds points independent of the training sample: the training split's unused points
    when ``n_train`` leaves some, else the test split (the loop says which in the summary).

    * ``per_sample_grads``, ``cov="heldout"`` (default): of ``cov_size`` held-out points drawn afresh each
      step, so that ``Sigma_t`` depends on the trajectory but not on the training sample -- Wang et al.'s
      covariance is the *expected* gradient covariance, shared by the prior and the posterior kernels.
      ``cov="batch"``: of the step's batch (in full-batch mode, ``gld``, of ``cov_size`` training points drawn
      afresh each step); ``Sigma_t`` then depends on the training sample, the prior's kernel would have to
      as well, and the accounted KL sum is not a bound (the loop reports no bound for it).
    * ``prior_mean`` (when ``bound``): the prior chain's drift ``mu_t``, Wang et al.'s expected gradient,
      estimated as the mean gradient at the current weights on ``batch_size`` held-out points drawn afresh
      each step. It depends on the trajectory so far but not on the training sample, which is what the
      chaining argument needs of the prior.
    * ``prior_points`` (Negrea et al. 2019's data-dependent prior; a boolean mask of the training points in
      ``S_J``): the prior's drift is instead the mean gradient on the step's batch points that are in ``S_J``
      (full batch: on all of ``S_J``) -- a function of ``S_J``, the batch indices (drawn independently of the
      sample) and the weights only, so the prior may use it; ``g_t - mu_t`` is then ``(k / B)`` times the
      difference of the means of the batch's ``k`` points outside ``S_J`` and of its points inside. A batch
      with no point of ``S_J`` gets the mean gradient on ``batch_size`` points of ``S_J`` drawn afresh. With
      ``cov="batch"`` the covariance comes from the batch's points in ``S_J`` only, which keeps it a bound.
    * ``prior_gap`` (``pairs``, Haghifam et al. 2020's CMI bound): the prior knows every point but not which
      member of each bound pair trains, so it forecasts a pair's gradient by the mean of its two members; ``g_t
      - mu_t`` is ``(1 / 2B)`` times the sum over the batch's paired points of (member's gradient - ghost's).
    """
    out: dict[str, torch.Tensor] = {}
    size = cov_size or batch_size
    if optimizer.needs_per_sample_grads:
        if cov == "heldout":
            out["per_sample_grads"] = stacked_per_sample_grads(
                heldout_objective, _step_subset(seed, step, 3, heldout_objective.n, size))
        else:
            idx = indices if indices is not None else _step_subset(seed, step, 1, objective.n, size)
            if prior_points is not None:
                idx = idx[prior_points[idx]] if prior_points[idx].sum() >= 2 else _prior_subset(
                    prior_points, seed, step, 4, size)
            out["per_sample_grads"] = stacked_per_sample_grads(objective, idx)
    if bound and pairs is not None:
        out["prior_gap"] = pairs.gap(objective, indices)
    elif bound and prior_points is not None:
        batch = indices if indices is not None else torch.arange(objective.n)
        inside = batch[prior_points[batch]]
        if inside.numel() == 0:
            inside = _prior_subset(prior_points, seed, step, 5, batch_size)
        out["prior_mean"] = params_to_vector(objective.grad(indices=inside))
    elif bound:
        held = _step_subset(seed, step, 2, heldout_objective.n, batch_size)
        out["prior_mean"] = params_to_vector(heldout_objective.grad(indices=held))
    return out


class SGLDAccounting(Callback):
    """The training plugin of SGLD: what :meth:`SGLD.step` needs each step, and the bound along the run.

    Each step it hands the optimizer the per-sample gradients its noise shape is estimated from and the
    prior chain's drift (:func:`step_inputs`). At each evaluation it adds the bound's terms to the metrics
    record, and when the run stops it writes them to ``summary.json``: ``sgld_information`` (the accounted
    KL sum ``I``), ``sgld_error_gap_bound`` and, for ``negrea`` and ``cmi``, ``sgld_bound_train_error`` and
    ``sgld_test_error_bound`` (their sum). By mode (the loss is the 0-1 error):

    * ``heldout`` (Wang et al.): ``sqrt(2 (1/2)^2 I / n)``, prior drift from held-out points;
    * ``negrea`` (Negrea et al. 2019): ``sqrt(2 (1/2)^2 I / (n - m))`` on the ``n - m`` points outside ``S_J``,
      whose error is the train-error term;
    * ``cmi`` (Haghifam et al. 2020, Steinke & Zakynthinou's ``sqrt(2 CMI / k)``): ``sqrt(2 I / k)`` over the
      ``k = n - m`` bound pairs; the train-error term is the error on all ``n`` training points, whose
      expectation equals the pairs' members' (the algorithm treats the training points exchangeably: uniform
      batches, isotropic or held-out noise). The members' and ghosts' own errors are reported beside it. With
      one bound pair (the default) also ``sgld_test_error_bound_sharp``:
      :func:`genlab.bounds.infotheory.pair_sign_bound`, never above ``sgld_test_error_bound``.

    One run is one draw of the algorithm's randomness (and, for ``cmi``, of the selector); the expectation the
    bounds are stated for is estimated over seeds by :func:`genlab.bounds.infotheory.bound_over_seeds`.

    Usable in a plain loop too: ``optimizer.step(**accounting.step_kwargs(state))`` with a
    :class:`~genlab.train.callbacks.TrainState` holding the step and its indices.

    Args:
        heldout: an Objective on points independent of the training sample (the prior's data).
        heldout_source: where those points come from (recorded in the summary).
        batch_size: points per step for the prior's drift; bound: ``heldout``, ``negrea``, ``cmi`` or ``off``
            (``True``/``False``: heldout/off); cov: ``"heldout"`` or ``"batch"``; cov_size: points the
            covariance is estimated on; prior_size: ``m`` (negrea, default ``n/2``); pairs: the CMI bound's
            :class:`BoundPairs` (needed by ``cmi``).
    """

    state_key = "sgld"

    def __init__(self, heldout: Objective, heldout_source: str, *, batch_size: int, bound: bool | str = True,
                 cov: str = "heldout", cov_size: int | None = None, noise: str = "isotropic",
                 prior_size: int | None = None, pairs: BoundPairs | None = None):
        self.heldout, self.heldout_source = heldout, heldout_source
        self.mode = {True: "heldout", False: "off"}.get(bound, bound) if isinstance(bound, bool) else bound
        if self.mode not in ("heldout", "negrea", "cmi", "off"):
            raise ValueError(f"bound must be heldout, negrea, cmi or off, not {bound!r}")
        if self.mode == "cmi" and pairs is None:
            raise ValueError("bound 'cmi' needs its bound pairs (pairs=BoundPairs(...)); "
                             "genlab.data.supersample.draw_supersample makes them")
        self.bound = self.mode != "off"
        self.batch_size, self.cov, self.cov_size, self.noise = batch_size, cov, cov_size, noise
        self.prior_size, self.pairs = prior_size, pairs if self.mode == "cmi" else None
        self._mask: torch.Tensor | None = None
        self._checked = False

    def settings(self) -> dict:
        return {"batch_size": self.batch_size, "bound": self.mode, "cov": self.cov, "cov_size": self.cov_size,
                "prior_size": self.prior_size}

    def prior_points(self, state: TrainState) -> torch.Tensor | None:
        """The mask of ``S_J`` (``negrea``; drawn once from the run's seed), else ``None``."""
        if self.mode != "negrea":
            return None
        if self._mask is None:
            n = state.objective.n
            self._mask = prior_subset_mask(n, self.prior_size or n // 2, state.seed)
        return self._mask

    def step_kwargs(self, state: TrainState) -> dict:
        if getattr(state.optimizer, "needs_per_sample_grads", None) is None:
            return {}
        if not self._checked:  # per-sample gradient columns follow the model's order
            mine = [id(p) for p in state.optimizer._params()]
            if mine != [id(p) for p in state.objective.params().values()]:
                raise ValueError("SGLD: its parameters (group after group) must be the model's trainable "
                                 "parameters in the model's order")
            if self.pairs is not None:
                check_train_equals_eval(state.objective)
            self._checked = True
        return step_inputs(state.optimizer, state.objective, self.heldout, state.indices, batch_size=self.batch_size,
                           seed=state.seed, step=state.step, bound=self.bound, cov=self.cov, cov_size=self.cov_size,
                           prior_points=self.prior_points(state), pairs=self.pairs)

    def bound_terms(self, state: TrainState, train_accuracy: float | None = None) -> dict:
        """The bound's terms at the current weights (empty when no bound is accounted); ``train_accuracy``: the
        accuracy on all training points when the caller has measured it already (``cmi`` then reuses it)."""
        info = getattr(state.optimizer, "info", None)
        if info is None or not self.bound:
            return {}
        out: dict = {"sgld_information": info}
        if self.mode == "cmi":
            if train_accuracy is not None and state.objective.classification:
                error = 1.0 - train_accuracy
            else:
                error = error_rate(state.objective, torch.arange(state.objective.n))
            gap = information_bound(info, self.pairs.k, 1.0)
        elif self.mode == "negrea":
            rest = torch.nonzero(~self.prior_points(state)).flatten()
            error = error_rate(state.objective, rest)
            gap = information_bound(info, rest.numel(), 0.5)
        elif self.cov == "batch" and self.noise != "isotropic":
            return out  # no bound (summary says why)
        else:
            return {**out, "sgld_error_gap_bound": information_bound(info, state.objective.n, 0.5)}
        out.update({"sgld_error_gap_bound": gap, "sgld_bound_train_error": error,
                    "sgld_test_error_bound": None if error is None else error + gap})
        if self.mode == "cmi" and self.pairs.k == 1 and error is not None:
            out["sgld_test_error_bound_sharp"] = pair_sign_bound(info, error)
        return out

    def _log(self, state: TrainState) -> None:
        if "train_loss" in state.metrics:  # an evaluation step: the bound's terms beside its figures
            state.metrics.update(self.bound_terms(state, state.metrics.get("train_accuracy")))

    def on_train_start(self, state: TrainState, resumed: bool) -> None:
        self._log(state)

    def on_step_end(self, state: TrainState) -> None:
        self._log(state)

    def summary(self, state: TrainState) -> dict:
        terms = self.bound_terms(state)
        if not terms:
            return {}
        out = {**terms, "sgld_bound": self.mode}
        if self.mode == "cmi":
            members, ghosts = self.pairs.errors(state.objective)
            out.update({"sgld_prior_size": state.objective.n - self.pairs.k, "sgld_bound_pairs": self.pairs.k,
                        "sgld_pair_member_error": members, "sgld_pair_ghost_error": ghosts})
        elif self.mode == "negrea":
            mask = self.prior_points(state)
            out.update({"sgld_prior_size": int(mask.sum()), "sgld_bound_points": int((~mask).sum())})
        else:
            out["sgld_heldout"] = self.heldout_source
            if "sgld_error_gap_bound" not in out:
                out["sgld_error_gap_bound"] = None
                out["sgld_bound_note"] = ("no bound: Sigma_t was estimated on the training batch, so the prior "
                                          "chain would depend on the sample (use sgld_cov heldout)")
        return out


def error_rate(objective: Objective, indices: torch.Tensor) -> float | None:
    """The 0-1 error of the current model on the training points ``indices`` (``None`` for regression)."""
    if not objective.classification:
        return None
    wrong = 0
    with torch.no_grad(), objective.eval_mode():
        for xb, yb in objective.chunks(indices):
            labels = yb.argmax(dim=1) if yb.dim() == 2 else yb
            wrong += int((objective.forward(xb).argmax(dim=1) != labels).sum())
    return wrong / max(int(indices.numel()), 1)


def heldout_objective(config, data, model, test_objective) -> tuple[Objective, str]:
    """SGLD's held-out points and where they come from: the training split's points beyond ``n_train`` when
    there are enough (independent of the training sample and of the test figures), else the test split."""
    need = max(config.run.batch_size, config.optimizer.sgld_cov_size or 0)
    if data.x_heldout is not None and len(data.x_heldout) >= need:
        return (Objective(model, data.x_heldout, data.y_heldout, loss=data.loss,
                          batch_size=config.run.eval_batch_size, classification=data.task == "classification"),
                f"{len(data.x_heldout)} training-split points beyond n_train")
    return test_objective, f"the test split ({test_objective.n} points; the test figures reuse them)"


def _build_sgld(params, c):
    o = c.optimizer
    return SGLD(params, lr=o.lr, noise=o.sgld_noise, noise_trace=o.noise_trace, floor=o.noise_floor, seed=c.run.seed,
                complete=o.sgld_completion)


def _sgld_plugins(ctx: BuildContext) -> list[Callback]:
    c = ctx.config
    if not isinstance(c.optimizer, SGLDSettings):
        return []
    o = c.optimizer
    held, source = heldout_objective(c, ctx.data, ctx.model, ctx.test_objective)
    pairs = None
    if o.sgld_bound == "cmi":
        data = ctx.data
        if getattr(data, "x_ghost", None) is None:
            raise ValueError("--sgld-bound cmi: the data have no super-sample (genlab.data.supersample."
                             "draw_supersample makes one; genlab train does it from the settings)")
        ghosts = Objective(ctx.model, data.x_ghost, data.y_ghost, loss=data.loss, batch_size=c.run.eval_batch_size,
                           classification=data.task == "classification")
        pairs = BoundPairs(ghosts, data.ghost_of, len(data.x_train))
    return [SGLDAccounting(held, source, batch_size=c.run.batch_size, bound=o.sgld_bound, cov=o.sgld_cov,
                           cov_size=o.sgld_cov_size, noise=o.sgld_noise,
                           prior_size=o.sgld_prior_size if o.sgld_bound == "negrea" else None, pairs=pairs)]
register_optimizer(OptimizerSpec("sgld", "mini-batch SGLD with structured noise (--sgld-noise, --noise-trace)",
                                 False, _build_sgld, settings=SGLDSettings))
register_optimizer(OptimizerSpec("gld", "full-batch gradient descent plus SGLD noise (C from a batch of "
                                 "--batch-size points)", True, _build_sgld, settings=SGLDSettings))
register_plugin_factory("sgld", _sgld_plugins, order=5)
