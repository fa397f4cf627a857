"""Losses as objects: one place for every loss convention genlab uses.

An :class:`~genlab.objective.Objective` minimises the **mean over examples** of a per-example loss. A loss is
any object with ``batch_sum(outputs, targets)`` (the sum of the per-example losses of one batch); that is all
values, gradients and Hessian-vector products need. Curvature beyond the Hessian needs more, and the ready
losses provide it:

* ``output_hessian_product(outputs, targets, u)``: ``C_i u_i`` per example, with ``C_i`` the Hessian of the
  per-example loss in the model's outputs (the generalised Gauss--Newton matrix is ``(1/n) sum J_i^T C_i J_i``);
* ``output_hessian_sqrt(outputs, targets)``: ``C_i^{1/2}`` per example (Jacobian-based Gauss--Newton bounds).

The ready losses (:class:`CrossEntropy`, :class:`MSE`, :class:`BCEWithLogits`, :class:`Huber`) have both;
:func:`as_loss` wraps anything else -- a ``torch.nn`` loss module or a function ``loss(outputs, targets)``
returning per-example losses ``(B,)`` or the batch mean (a scalar) -- and a wrapped loss raises
:class:`MissingLossMethod` naming the method only when a computation needs it. ``torch.nn`` losses with a
ready counterpart (``CrossEntropyLoss``, ``MSELoss``, ``BCEWithLogitsLoss``, ``HuberLoss``) are converted to
it, so they get the output Hessian too.

Conventions (per example; ``k`` outputs):

* ``"ce"`` / :class:`CrossEntropy`: ``torch.nn.functional.cross_entropy`` per example (label smoothing and
  class weights as torch defines them; with weights the Objective's mean is ``(1/n) sum_i w_{y_i} ce_i``,
  not torch's weight-normalised mean).
* ``"mse"`` / :class:`MSE`: ``0.5 ||f(x) - y||^2`` (Cohen et al. 2021; one-hot targets for classes).
  ``MSE(scale=1, output_reduction="mean")`` is ``torch.nn.MSELoss()``'s ``mean_j (f_j - y_j)^2``.
* ``"bce"`` / :class:`BCEWithLogits`: binary cross-entropy of logits, averaged over the ``k`` outputs.
* ``"huber"`` / :class:`Huber`: ``sum_j huber_delta(f_j - y_j)`` (equals ``0.5 r^2`` for ``|r| <= delta``).

Example::

    >>> import torch
    >>> from genlab.losses import as_loss
    >>> loss = as_loss(torch.nn.CrossEntropyLoss(label_smoothing=0.1))
    >>> loss
    CrossEntropy(label_smoothing=0.1)
    >>> out, y = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    >>> bool(torch.isclose(loss.batch_sum(out, y) / 4, torch.nn.CrossEntropyLoss(label_smoothing=0.1)(out, y)))
    True
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from genlab.errors import ConfigError, GenlabError


class MissingLossMethod(GenlabError):
    """A computation needs a method (the output Hessian) that this loss does not provide."""

    exit_code = 2


class Loss:
    """Base class of the losses genlab knows: per-example losses, summed over a batch.

    Subclasses implement :meth:`per_example`; the curvature methods are optional.
    """

    name = "loss"
    #: whether C_i = I for every example (the first-layer Jacobian bound of genlab.bounds.jacobian needs it)
    identity_output_hessian = False

    def per_example(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of each example, shape ``(B,)``."""
        raise NotImplementedError

    def batch_sum(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Sum of the per-example losses of one batch (what the Objective accumulates)."""
        return self.per_example(outputs, targets).sum()

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean loss of the batch (the ``torch.nn`` convention)."""
        return self.batch_sum(outputs, targets) / len(outputs)

    def output_hessian_product(self, outputs: torch.Tensor, targets: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``C_i u_i`` per example for ``outputs, u`` of shape ``(B, k)``."""
        raise MissingLossMethod(f"loss {self!r} has no output_hessian_product, which Gauss-Newton products need; "
                                f"use a ready loss (genlab.losses: CrossEntropy, MSE, BCEWithLogits, Huber) or "
                                f"give your loss that method")

    def output_hessian_sqrt(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``C_i^{1/2}`` per example, ``(B, k, k)`` (symmetric PSD square root, from the dense ``C_i``)."""
        B, k = outputs.shape
        eye = torch.eye(k, dtype=outputs.dtype, device=outputs.device)
        cols = [self.output_hessian_product(outputs, targets, eye[j].expand(B, k)) for j in range(k)]
        C = torch.stack(cols, dim=2)
        C = 0.5 * (C + C.transpose(1, 2))
        vals, vecs = torch.linalg.eigh(C)
        return vecs @ torch.diag_embed(vals.clamp_min(0).sqrt()) @ vecs.transpose(1, 2)

    def spec(self) -> dict[str, Any]:
        """A JSON description from which :func:`loss_from_spec` rebuilds this loss (run directories record it)."""
        raise MissingLossMethod(f"loss {self!r} cannot be recorded in a run directory; register it with "
                                f"genlab.register_loss(name, factory) and pass the name")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._args().items())
        return f"{type(self).__name__}({args})"

    def _args(self) -> dict[str, Any]:
        return {}


class ReadyLoss(Loss):
    """A loss genlab ships: recorded in run directories by its name and its non-default options."""

    #: constructor options and their defaults; :meth:`spec` and ``repr`` show those that differ
    DEFAULTS: dict[str, Any] = {}

    def _args(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, default in self.DEFAULTS.items():
            value = getattr(self, key)
            if isinstance(value, torch.Tensor):
                value = [float(x) for x in value.reshape(-1)]
            if value != default:
                out[key] = value
        return out

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, **self._args()}


def _reduce_outputs(values: torch.Tensor, how: str) -> torch.Tensor:
    flat = values.reshape(values.shape[0], -1)
    return flat.sum(dim=1) if how == "sum" else flat.mean(dim=1)


def _check_reduction(how: str) -> str:
    if how not in ("sum", "mean"):
        raise ConfigError(f"output_reduction: {how!r}; allowed: sum, mean")
    return how


class CrossEntropy(ReadyLoss):
    """Cross-entropy of logits ``(B, K)`` against class indices (or class probabilities), per example.

    ``C_i = s_i (diag(p) - p p^T)`` with ``p = softmax(f)`` and ``s_i = (1 - eps) w_{y_i} + eps mean_c w_c``
    (1 without weights), PSD.
    """

    name = "ce"
    DEFAULTS = {"label_smoothing": 0.0, "weight": None}

    def __init__(self, label_smoothing: float = 0.0, weight: torch.Tensor | list[float] | None = None):
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ConfigError(f"label_smoothing: must be in [0, 1) (got {label_smoothing})")
        self.label_smoothing = float(label_smoothing)
        self.weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float64)

    def _w(self, like: torch.Tensor) -> torch.Tensor | None:
        return None if self.weight is None else self.weight.to(like.device, like.dtype)

    def per_example(self, outputs, targets):
        if targets.is_floating_point() and targets.shape != outputs.shape:
            targets = targets.long()
        return F.cross_entropy(outputs, targets, weight=self._w(outputs), reduction="none",
                               label_smoothing=self.label_smoothing)

    def _scale(self, outputs, targets) -> torch.Tensor | float:
        eps, w = self.label_smoothing, self._w(outputs)
        if targets.is_floating_point() and targets.shape == outputs.shape:  # class probabilities
            if w is not None:
                raise MissingLossMethod("CrossEntropy with class weights and probability targets has no output "
                                        "Hessian here; use class indices")
            return ((1 - eps) * targets.sum(dim=1) + eps).unsqueeze(1)
        if w is None:
            return 1.0
        return ((1 - eps) * w[targets.long()] + eps * w.mean()).unsqueeze(1)

    def output_hessian_product(self, outputs, targets, u):
        p = torch.softmax(outputs, dim=-1)
        return self._scale(outputs, targets) * (p * u - p * (p * u).sum(dim=-1, keepdim=True))

    def output_hessian_sqrt(self, outputs, targets):
        p = torch.softmax(outputs, dim=-1)
        C = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        s = self._scale(outputs, targets)
        if not isinstance(s, float):
            C = C * s.unsqueeze(2)
        vals, vecs = torch.linalg.eigh(C)
        return vecs @ torch.diag_embed(vals.clamp_min(0).sqrt()) @ vecs.transpose(1, 2)



class MSE(ReadyLoss):
    """``scale * reduce_j (f_j - y_j)^2`` per example; default ``0.5 ||f - y||^2`` (``C_i = I``).

    Targets are reshaped to the outputs' shape (``(B,)`` targets for ``(B, 1)`` outputs).
    """

    name = "mse"
    DEFAULTS = {"scale": 0.5, "output_reduction": "sum"}

    def __init__(self, scale: float = 0.5, output_reduction: str = "sum"):
        if not float(scale) > 0:
            raise ConfigError(f"scale: must be > 0 (got {scale})")
        self.scale, self.output_reduction = float(scale), _check_reduction(output_reduction)
        self.identity_output_hessian = self.scale == 0.5 and self.output_reduction == "sum"

    def per_example(self, outputs, targets):
        diff = outputs - targets.reshape(outputs.shape).to(outputs.dtype)
        return self.scale * _reduce_outputs(diff.pow(2), self.output_reduction)

    def _factor(self, outputs) -> float:
        k = outputs[0].numel()
        return 2 * self.scale / (k if self.output_reduction == "mean" else 1)

    def output_hessian_product(self, outputs, targets, u):
        return self._factor(outputs) * u

    def output_hessian_sqrt(self, outputs, targets):
        B, k = outputs.shape
        eye = torch.eye(k, dtype=outputs.dtype, device=outputs.device) * self._factor(outputs) ** 0.5
        return eye.expand(B, k, k)



class BCEWithLogits(ReadyLoss):
    """Binary cross-entropy of logits against targets in [0, 1], averaged (default) or summed over outputs.

    ``C_i = diag((pw y + 1 - y) s (1 - s)) / k`` with ``s = sigmoid(f)`` (``pw``: ``pos_weight``, default 1).
    """

    name = "bce"
    DEFAULTS = {"pos_weight": None, "output_reduction": "mean"}

    def __init__(self, pos_weight: torch.Tensor | list[float] | float | None = None, output_reduction: str = "mean"):
        self.pos_weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float64)
        self.output_reduction = _check_reduction(output_reduction)

    def _targets(self, outputs, targets):
        return targets.reshape(outputs.shape).to(outputs.dtype)

    def per_example(self, outputs, targets):
        pw = None if self.pos_weight is None else self.pos_weight.to(outputs.device, outputs.dtype)
        per = F.binary_cross_entropy_with_logits(outputs, self._targets(outputs, targets), reduction="none",
                                                 pos_weight=pw)
        return _reduce_outputs(per, self.output_reduction)

    def _diag(self, outputs, targets):
        s = torch.sigmoid(outputs)
        d = s * (1 - s)
        if self.pos_weight is not None:
            y = self._targets(outputs, targets)
            d = d * (self.pos_weight.to(outputs.device, outputs.dtype) * y + 1 - y)
        return d / (outputs[0].numel() if self.output_reduction == "mean" else 1)

    def output_hessian_product(self, outputs, targets, u):
        return self._diag(outputs, targets) * u

    def output_hessian_sqrt(self, outputs, targets):
        return torch.diag_embed(self._diag(outputs, targets).clamp_min(0).sqrt())



class Huber(ReadyLoss):
    """``reduce_j huber_delta(f_j - y_j)``: ``0.5 r^2`` for ``|r| <= delta``, else ``delta (|r| - delta / 2)``.

    Summed over outputs by default (so it equals :class:`MSE` near zero residual). ``C_i`` is the generalised
    Hessian ``diag(1{|r_j| < delta})`` (divided by ``k`` with ``output_reduction="mean"``).
    """

    name = "huber"
    DEFAULTS = {"delta": 1.0, "output_reduction": "sum"}

    def __init__(self, delta: float = 1.0, output_reduction: str = "sum"):
        if not float(delta) > 0:
            raise ConfigError(f"delta: must be > 0 (got {delta})")
        self.delta, self.output_reduction = float(delta), _check_reduction(output_reduction)

    def _residual(self, outputs, targets):
        return outputs - targets.reshape(outputs.shape).to(outputs.dtype)

    def per_example(self, outputs, targets):
        per = F.huber_loss(outputs, targets.reshape(outputs.shape).to(outputs.dtype), reduction="none",
                           delta=self.delta)
        return _reduce_outputs(per, self.output_reduction)

    def _diag(self, outputs, targets):
        d = (self._residual(outputs, targets).abs() < self.delta).to(outputs.dtype)
        return d / (outputs[0].numel() if self.output_reduction == "mean" else 1)

    def output_hessian_product(self, outputs, targets, u):
        return self._diag(outputs, targets) * u

    def output_hessian_sqrt(self, outputs, targets):
        return torch.diag_embed(self._diag(outputs, targets).sqrt())



class FunctionLoss(Loss):
    """Any callable ``loss(outputs, targets)``: per-example losses ``(B,)``, or a scalar taken as the batch mean.

    Values, gradients and Hessian-vector products work; Gauss--Newton quantities raise
    :class:`MissingLossMethod` (a generic callable has no output Hessian we can trust).
    """

    def __init__(self, fn: Callable[[Any, Any], torch.Tensor], name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def batch_sum(self, outputs, targets):
        value = self.fn(outputs, targets)
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"loss {self.name}: returned {type(value).__name__}, expected a tensor")
        if value.dim() == 0:
            return value * len(outputs)
        if value.shape[0] != len(outputs):
            raise ConfigError(f"loss {self.name}: returned shape {tuple(value.shape)} for a batch of "
                              f"{len(outputs)}; return per-example losses (B,) or the batch mean (a scalar)")
        return value.reshape(len(outputs), -1).sum()

    def per_example(self, outputs, targets):
        value = self.fn(outputs, targets)
        if value.dim() == 0:
            raise MissingLossMethod(f"loss {self.name} returns only the batch mean; per-example losses need it "
                                    f"to return shape (B,)")
        return value.reshape(len(outputs), -1).sum(dim=1)

    def __repr__(self):
        return f"FunctionLoss({self.name})"


class TorchLoss(FunctionLoss):
    """A ``torch.nn`` loss module without a ready counterpart, evaluated with ``reduction="none"``.

    The per-example loss is the module's element-wise loss averaged (``reduction="mean"``) or summed
    (``"sum"``) over each example's elements, so the Objective's mean equals the module's value on the
    whole dataset as one batch for ``"mean"``.
    """

    def __init__(self, module: nn.Module):
        self.reduce = getattr(module, "reduction", "mean")
        if self.reduce not in ("mean", "sum"):
            raise ConfigError(f"loss {type(module).__name__}: reduction {self.reduce!r}; allowed: mean, sum")
        per = copy.deepcopy(module)
        per.reduction = "none"
        self.module = per

        def per_example(outputs, targets):
            return _reduce_outputs(per(outputs, targets), self.reduce)

        super().__init__(per_example, name=type(module).__name__)


LOSSES: dict[str, Callable[..., Loss]] = {"ce": CrossEntropy, "mse": MSE, "bce": BCEWithLogits, "huber": Huber}


def register_loss(name: str, factory: Callable[..., Any]) -> None:
    """Make ``factory(**options)`` (returning a loss, or anything :func:`as_loss` takes) known as ``name``.

    Names are unique; the ready names ``ce``, ``mse``, ``bce``, ``huber`` cannot be replaced.
    """
    if name in LOSSES and LOSSES[name] is not factory:
        raise ConfigError(f"loss {name!r} is registered already")
    LOSSES[name] = factory


def loss_from_spec(spec: str | dict[str, Any]) -> Loss:
    """The loss a name (``"ce"``) or a recorded spec (``{"name": "ce", "label_smoothing": 0.1}``) describes."""
    if isinstance(spec, str):
        spec = {"name": spec}
    options = dict(spec)
    name = options.pop("name", None)
    if name not in LOSSES:
        raise ConfigError(f"loss: unknown loss {name!r}; allowed: {', '.join(LOSSES)} (or register_loss)")
    try:
        return as_loss(LOSSES[name](**options))
    except TypeError as err:
        raise ConfigError(f"loss {name}: bad options {options} ({err})") from None


def as_loss(loss: Any) -> Loss:
    """A :class:`Loss` from a name, a :class:`Loss`, a ``torch.nn`` loss module or a function.

    ``torch.nn.CrossEntropyLoss``, ``MSELoss``, ``BCEWithLogitsLoss`` and ``HuberLoss`` (with their default
    ``ignore_index``) become the ready losses with the same value, so their output Hessians are known.
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, (str, dict)):
        return loss_from_spec(loss)
    if isinstance(loss, nn.Module):
        ready = _ready_counterpart(loss)
        if ready is not None:
            return ready
        if hasattr(loss, "reduction"):
            return TorchLoss(loss)
        return FunctionLoss(loss, name=type(loss).__name__)
    if callable(loss):
        return FunctionLoss(loss)
    raise ConfigError(f"loss: {loss!r} is not a loss; give a name ({', '.join(LOSSES)}), a genlab.losses.Loss, "
                      f"a torch.nn loss or a function loss(outputs, targets)")


def _ready_counterpart(module: nn.Module) -> Loss | None:
    reduction = getattr(module, "reduction", None)
    if reduction not in ("mean", "sum"):
        return None
    if type(module) is nn.CrossEntropyLoss and module.ignore_index == -100:
        return CrossEntropy(module.label_smoothing, module.weight)
    if type(module) is nn.MSELoss:
        return MSE(scale=1.0, output_reduction=reduction)
    if type(module) is nn.BCEWithLogitsLoss and module.weight is None:
        return BCEWithLogits(module.pos_weight, output_reduction=reduction)
    if type(module) is nn.HuberLoss:
        return Huber(module.delta, output_reduction=reduction)
    return None
