"""Variational learning: IVON (Shen et al. 2024) and variational gradient descent (Ghosh et al. 2025).

Both keep a Gaussian (or Student-t) posterior ``q = N(m, diag(sigma^2))`` over the weights, whose mean ``m``
lives in the model's parameters between steps. A step draws ``S`` samples ``theta_s = m + eps_s``, calls the
closure at each (the closure zeroes ``.grad`` and backpropagates the batch loss, so every sample's gradient
is its own -- the public EoS code summed samples unevenly because gradients were not zeroed in between),
averages, and moves the mean. The training loop passes that closure (``needs_closure``).

IVON, written from the paper's Algorithm 1 (our own implementation; the reference package is GPL)::

    sigma   = 1 / sqrt(ess (h + wd))
    g_hat   = mean_s grad l(theta_s),   h_hat = mean_s grad l(theta_s) * eps_s / sigma^2   (reparameterisation)
    g       = beta1 g + (1 - beta1) g_hat
    h       = beta2 h + (1 - beta2) h_hat + (1 - beta2)^2 (h - h_hat)^2 / (2 (h + wd))   (stays positive)
    m       = m - lr' (g / (1 - beta1^t) + wd m) / (h + wd)

with ``lr' = lr (h0 + wd)`` when ``rescale_lr`` (the default: the first steps then move like SGD with ``lr``),
optional element-wise clipping of the update direction, and ``h`` started at ``hess_init``. With
``beta1 = 0``, ``beta2 = 1`` (``h`` frozen), ``wd = 0`` and ``rescale_lr`` this is exactly variational GD with
``sigma^2 = 1 / (ess h0)``: :class:`VariationalGD`.

Variational GD: ``m = m - lr (1/S) sum_s grad l(m + eps_s)``, ``eps_s ~ N(0, sigma^2 I)`` (or a diagonal
``sigma^2``), full batch in the papers' analysis. On a quadratic it descends in expectation along an
eigenvector of curvature ``H`` only while ``H + H^3 / z < 2 / lr`` with ``z = S c / sigma^2``, ``c`` the squared
gradient component along it (:func:`vl_threshold`): sharpness settles below GD's ``2 / lr``.

``posterior="student-t"`` draws ``eps = sigma * t_nu`` (``nu`` integer > 2, heavier tails than the Gaussian of
the same scale); IVON's Hessian estimate is then the Gaussian formula applied to those draws.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator

import torch

from genlab.settings.optimizers import IVONSettings, VGDSettings
from genlab.train.optimizers import OptimizerSpec, register_optimizer

POSTERIORS = ("gaussian", "student-t")


def vl_threshold(lr: float, z: float) -> float:
    """The curvature ``H`` solving ``H + H^3 / z = 2 / lr`` (the unique positive root): the sharpness above which
    variational GD's mean stops descending in expectation along that direction. ``z = inf`` gives ``2 / lr``."""
    if not lr > 0 or not z > 0:
        raise ValueError(f"need lr > 0 and z > 0 (got {lr}, {z})")
    target = 2.0 / lr
    if math.isinf(z):
        return target
    lo, hi = 0.0, target  # f(H) = H + H^3/z - target is increasing, f(0) < 0 <= f(target)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid + mid ** 3 / z < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def variational_factor(lr: float, z: float) -> float:
    """``VF = vl_threshold(lr, z) / (2 / lr)`` in ``(0, 1]``: how far below GD's threshold VL's sits."""
    return vl_threshold(lr, z) * lr / 2.0


class _SampledGradientOptimizer(torch.optim.Optimizer):
    """Shared machinery: noise draws, gradients at ``S`` samples around the mean, generator checkpointing."""

    needs_closure = True

    def __init__(self, params, defaults: dict, seed: int, posterior: str, dof: int):
        if posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {', '.join(POSTERIORS)}, not {posterior!r}")
        if posterior == "student-t" and not (isinstance(dof, int) and dof > 2):
            raise ValueError(f"student-t degrees of freedom must be an integer > 2 (got {dof!r})")
        if not defaults["mc_samples"] >= 1:
            raise ValueError(f"mc_samples must be >= 1 (got {defaults['mc_samples']})")
        super().__init__(params, dict(defaults, posterior=posterior, dof=dof))
        for key in self.SHARED:  # one posterior sample per step covers every group: these cannot differ
            values = {repr(g[key]) for g in self.param_groups}
            if len(values) > 1:
                raise ValueError(f"{type(self).__name__}: {key} must be the same in every parameter group "
                                 f"(got {sorted(values)}); groups may differ in "
                                 f"{', '.join(k for k in self.defaults if k not in self.SHARED)}")
        self.generator = torch.Generator().manual_seed(int(seed))

    #: settings every parameter group shares (the others -- lr, weight decay, ... -- may differ per group)
    SHARED = ("mc_samples", "posterior", "dof")

    def _params(self) -> list[torch.nn.Parameter]:
        """Every trainable parameter, group after group (the order of the sampled noise)."""
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    def _group_slices(self) -> list[tuple[dict, slice]]:
        """Each group with the slice of :meth:`_params` it owns."""
        out, start = [], 0
        for g in self.param_groups:
            k = sum(1 for p in g["params"] if p.requires_grad)
            out.append((g, slice(start, start + k)))
            start += k
        return out

    def _standard_noise(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """One standard draw per parameter tensor (one generator call for all of them: small tensors are many)."""
        group = self.param_groups[0]
        total = sum(p.numel() for p in params)
        dtype = params[0].dtype
        z = torch.randn(total, generator=self.generator, dtype=dtype)
        if group["posterior"] == "student-t":
            nu = group["dof"]
            chi2 = torch.randn((nu, total), generator=self.generator, dtype=dtype).pow(2).sum(0)
            z = z / (chi2 / nu).sqrt()
        z = z.to(params[0].device)
        return [piece.view_as(p) for piece, p in zip(z.split([p.numel() for p in params]), params)]

    def sigma(self) -> list[torch.Tensor]:
        """The posterior standard deviation per parameter tensor."""
        raise NotImplementedError

    def posterior_variance(self) -> torch.Tensor:
        """``sigma^2`` flat in parameter order (for the variational-learning threshold)."""
        return torch.cat([s.reshape(-1) ** 2 for s in self.sigma()])

    @contextlib.contextmanager
    def sampled_params(self, sigma: list[torch.Tensor] | None = None) -> Iterator[list[torch.Tensor]]:
        """Set the parameters to one posterior sample ``m + eps`` inside the block; yields the ``eps``.

        The mean is kept in a buffer and copied back afterwards (exactly: no ``- eps`` round-off).
        """
        params = self._params()
        if getattr(self, "_mean_buffer", None) is None or len(self._mean_buffer) != len(params):
            self._mean_buffer = [torch.empty_like(p) for p in params]
        means = self._mean_buffer
        with torch.no_grad():
            torch._foreach_copy_(means, [p.detach() for p in params])
            eps = torch._foreach_mul(self._standard_noise(params), sigma if sigma is not None else self.sigma())
            torch._foreach_add_(params, eps)
        try:
            yield eps
        finally:
            with torch.no_grad():
                torch._foreach_copy_(params, means)

    def _sample_gradients(self, closure, hessian: bool):
        """Mean loss, mean gradient and (if ``hessian``) mean ``grad * eps / sigma^2`` over the samples."""
        S = self.param_groups[0]["mc_samples"]
        params = self._params()
        sigma = self.sigma()
        sig2 = torch._foreach_mul(sigma, sigma) if hessian else None
        g_sum = h_sum = None
        loss_sum = 0.0
        for _ in range(S):
            with self.sampled_params(sigma) as eps:
                with torch.enable_grad():
                    loss = closure()
                loss_sum += float(loss.detach() if torch.is_tensor(loss) else loss)
                grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
                if hessian:
                    h = torch._foreach_mul(grads, eps)
                    torch._foreach_div_(h, sig2)
                    h_sum = h if h_sum is None else torch._foreach_add(h_sum, h)
                g_sum = [g.detach().clone() for g in grads] if g_sum is None else torch._foreach_add(g_sum, grads)
        if S > 1:
            torch._foreach_div_(g_sum, S)
            if hessian:
                torch._foreach_div_(h_sum, S)
        return loss_sum / S, g_sum, h_sum

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


class VariationalGD(_SampledGradientOptimizer):
    """Variational gradient descent: ``m -= lr * mean_s grad l(m + eps_s)``, ``eps_s ~ N(0, sigma^2)``.

    Args:
        params: the parameters or parameter groups (``lr`` may differ per group); they hold the mean ``m``.
        lr: step size.
        sigma: the posterior standard deviation: a float (isotropic) or one tensor per parameter (diagonal).
        mc_samples: samples ``S`` per step.
        posterior: ``gaussian`` or ``student-t`` (``dof`` degrees of freedom, scale ``sigma``).
        seed: seed of the sampling generator (checkpointed with the optimizer).
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, sigma: float | list[torch.Tensor] = 0.01,
                 mc_samples: int = 1, posterior: str = "gaussian", dof: int = 4, seed: int = 0):
        if not lr > 0:
            raise ValueError(f"lr must be > 0 (got {lr})")
        super().__init__(params, dict(lr=lr, mc_samples=int(mc_samples)), seed, posterior, dof)
        params = self._params()
        if isinstance(sigma, (int, float)):
            if not sigma >= 0:
                raise ValueError(f"sigma must be >= 0 (got {sigma})")
            self._sigma = [torch.full_like(p, float(sigma)).detach() for p in params]
        else:
            self._sigma = [s.detach().to(p) for s, p in zip(sigma, params)]

    def sigma(self) -> list[torch.Tensor]:
        return self._sigma

    def stability_threshold(self) -> float:
        """GD's ``2 / lr`` (the VL threshold below it depends on the gradient: :meth:`variational_threshold`)."""
        return 2.0 / self.param_groups[0]["lr"]

    def variational_threshold(self, direction: torch.Tensor, grad_projection: float) -> tuple[float, float]:
        """``(threshold, z)`` along a unit ``direction`` (the top Hessian eigenvector, flat) with squared gradient
        component ``grad_projection``: ``z = S c / (u^T diag(sigma^2) u)``, threshold from :func:`vl_threshold`."""
        group = self.param_groups[0]
        var = float(torch.dot(direction.to(torch.float64) ** 2, self.posterior_variance().to(torch.float64)))
        z = math.inf if var == 0 else group["mc_samples"] * grad_projection / var
        if z == 0:
            return 0.0, 0.0
        return vl_threshold(group["lr"], z), z

    @torch.no_grad()
    def step(self, closure=None):
        """One step; ``closure`` (required) zeroes ``.grad``, backpropagates the batch loss and returns it."""
        if closure is None:
            raise ValueError("VariationalGD.step needs a closure (it evaluates the loss at each sample)")
        loss, g_hat, _ = self._sample_gradients(closure, hessian=False)
        params = self._params()
        for group, sl in self._group_slices():
            if sl.stop > sl.start:
                torch._foreach_add_(params[sl], g_hat[sl], alpha=-group["lr"])
        for p, g in zip(params, g_hat):
            p.grad = g
        return loss


class IVON(_SampledGradientOptimizer):
    """Improved Variational Online Newton (Shen et al. 2024); see the module docstring for the update.

    Args:
        params: the parameters or parameter groups; they hold the mean ``m``. Groups may set their own ``lr``,
            ``weight_decay`` (e.g. none on norms and biases), ``hess_init``, ``beta1``, ``beta2``,
            ``clip_radius``, ``rescale_lr`` and ``ess``; ``mc_samples``, ``posterior`` and ``dof`` are shared.
        lr: learning rate (multiplied by ``hess_init + weight_decay`` when ``rescale_lr``).
        ess: effective sample size ``lambda`` (usually the training-set size).
        hess_init: ``h0``.
        beta1, beta2: momentum of the gradient and of the Hessian estimate.
        weight_decay: ``delta``, the prior precision per example.
        mc_samples: samples per step.
        clip_radius: clip the update direction ``(g_bar + wd m) / (h + wd)`` element-wise to this (``inf``: off).
        rescale_lr: see above.
        posterior, dof: sampling distribution (``gaussian`` or ``student-t``).
        seed: seed of the sampling generator (checkpointed).
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, ess: float, hess_init: float = 1.0,
                 beta1: float = 0.9, beta2: float = 0.99999, weight_decay: float = 1e-4, mc_samples: int = 1,
                 clip_radius: float = math.inf, rescale_lr: bool = True, posterior: str = "gaussian", dof: int = 4,
                 seed: int = 0):
        if not lr > 0 or not ess > 0 or not hess_init > 0:
            raise ValueError(f"lr, ess and hess_init must be > 0 (got {lr}, {ess}, {hess_init})")
        if not 0 <= beta1 < 1 or not 0 <= beta2 <= 1 or not weight_decay >= 0:
            raise ValueError(f"need 0 <= beta1 < 1, 0 <= beta2 <= 1, weight_decay >= 0 (got {beta1}, {beta2}, "
                             f"{weight_decay})")
        super().__init__(params, dict(lr=lr, ess=float(ess), hess_init=float(hess_init), beta1=beta1, beta2=beta2,
                                      weight_decay=weight_decay, mc_samples=int(mc_samples),
                                      clip_radius=clip_radius, rescale_lr=rescale_lr, step=0), seed, posterior, dof)
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    self.state[p]["h"] = torch.full_like(p, float(group["hess_init"])).detach()
                    self.state[p]["g"] = torch.zeros_like(p).detach()

    def sigma(self) -> list[torch.Tensor]:
        params, out = self._params(), []
        for group, sl in self._group_slices():
            if sl.stop == sl.start:
                continue
            s = torch._foreach_add([self.state[p]["h"] for p in params[sl]], group["weight_decay"])
            torch._foreach_mul_(s, group["ess"])
            torch._foreach_rsqrt_(s)
            out.extend(s)
        return out

    def effective_lr(self, group: dict | None = None) -> float:
        """The step size actually applied (of ``group``; default the first)."""
        group = self.param_groups[0] if group is None else group
        return group["lr"] * ((group["hess_init"] + group["weight_decay"]) if group["rescale_lr"] else 1.0)

    def preconditioner(self) -> torch.Tensor:
        """Diagonal ``P`` with the step written as ``-lr P^-1 g`` (``g`` the undebiased momentum), flat.

        ``P = (1 - beta1^t) (h + wd) / (h0 + wd)`` with ``rescale_lr`` (``(1 - beta1^t) (h + wd)`` without), so
        the preconditioned sharpness ``lambda_max(P^-1 H)`` compares with :meth:`stability_threshold` as Adam's.
        """
        params, parts = self._params(), []
        for group, sl in self._group_slices():
            t = max(group["step"], 1)
            scale = (1 - group["beta1"] ** t) * group["lr"] / self.effective_lr(group)
            parts.extend((scale * (self.state[p]["h"] + group["weight_decay"])).reshape(-1) for p in params[sl])
        return torch.cat(parts)

    def stability_threshold(self) -> float:
        """``(2 + 2 beta1) / ((1 - beta1) lr)`` for the preconditioned sharpness (Adam's form; ``2 / lr`` at
        ``beta1 = 0``)."""
        group = self.param_groups[0]
        b1 = group["beta1"]
        return (2 + 2 * b1) / ((1 - b1) * group["lr"])

    @torch.no_grad()
    def step(self, closure=None):
        """One IVON step; ``closure`` (required) zeroes ``.grad``, backpropagates the batch loss and returns it."""
        if closure is None:
            raise ValueError("IVON.step needs a closure (it evaluates the loss at each posterior sample)")
        loss, g_hat, h_hat = self._sample_gradients(closure, hessian=True)
        params_all = self._params()
        for group, sl in self._group_slices():
            if sl.stop > sl.start:
                self._update_group(group, params_all[sl], g_hat[sl], h_hat[sl])
        for p, gh in zip(params_all, g_hat):
            p.grad = gh
        return loss

    def _update_group(self, group: dict, params: list, g_hat: list, h_hat: list) -> None:
        """The IVON update of one parameter group from its sampled gradient and Hessian estimates."""
        group["step"] += 1
        t, b1, b2, wd = group["step"], group["beta1"], group["beta2"], group["weight_decay"]
        lr = self.effective_lr(group)
        g = [self.state[p]["g"] for p in params]
        h = [self.state[p]["h"] for p in params]
        torch._foreach_mul_(g, b1)
        torch._foreach_add_(g, g_hat, alpha=1 - b1)
        sq = torch._foreach_sub(h, h_hat)              # (h - h_hat)^2 / (2 (h + wd)), from the old h
        torch._foreach_mul_(sq, sq)
        den = torch._foreach_add(h, wd)
        torch._foreach_mul_(den, 2.0)
        torch._foreach_div_(sq, den)
        torch._foreach_mul_(h, b2)
        torch._foreach_add_(h, h_hat, alpha=1 - b2)
        torch._foreach_add_(h, sq, alpha=(1 - b2) ** 2)
        direction = torch._foreach_div(g, 1 - b1 ** t)
        if wd:
            torch._foreach_add_(direction, params, alpha=wd)
        torch._foreach_div_(direction, torch._foreach_add(h, wd))
        if math.isfinite(group["clip_radius"]):
            torch._foreach_clamp_min_(direction, -group["clip_radius"])
            torch._foreach_clamp_max_(direction, group["clip_radius"])
        torch._foreach_add_(params, direction, alpha=-lr)


def posterior_predictive(optimizer: _SampledGradientOptimizer, model: torch.nn.Module, x: torch.Tensor,
                         samples: int, probabilities: bool = True) -> torch.Tensor:
    """Average over ``samples`` posterior draws of the model's output on ``x`` (softmax probabilities when
    ``probabilities``, else raw outputs): ``samples`` forward passes, parameters restored to the mean after."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1 (got {samples})")
    was_training = model.training
    model.eval()
    total = None
    try:
        with torch.no_grad():
            for _ in range(samples):
                with optimizer.sampled_params():
                    out = model(x)
                    out = out.softmax(dim=-1) if probabilities else out
                total = out if total is None else total + out
    finally:
        model.train(was_training)
    return total / samples


__all__ = ["IVON", "VariationalGD", "POSTERIORS", "posterior_predictive", "vl_threshold", "variational_factor"]


def _build_ivon(params, c, n_train):
    o = c.optimizer
    ess = o.ess if o.ess is not None else n_train
    if ess is None:
        raise ValueError("IVON needs ess (or the training-set size to default to)")
    return IVON(params, lr=o.lr, ess=ess, hess_init=o.hess_init, beta1=o.ivon_beta1, beta2=o.ivon_beta2,
                weight_decay=o.weight_decay, mc_samples=o.mc_samples,
                clip_radius=o.ivon_clip if o.ivon_clip is not None else math.inf, posterior=o.posterior, dof=o.dof,
                seed=c.run.seed)


def _build_vgd(params, c):
    o = c.optimizer
    return VariationalGD(params, lr=o.lr, sigma=o.vgd_sigma, mc_samples=o.mc_samples, posterior=o.posterior,
                         dof=o.dof, seed=c.run.seed)


register_optimizer(OptimizerSpec("ivon", "IVON variational learning on mini-batches (--ess, --hess-init, "
                                 "--mc-samples; full batch with --batch-size >= n)", False, _build_ivon,
                                 uses_train_size=True, settings=IVONSettings))
register_optimizer(OptimizerSpec("vgd", "full-batch variational GD: mean gradient at --mc-samples draws of "
                                 "N(w, --vgd-sigma^2)", True, _build_vgd,
                                 settings=VGDSettings))
