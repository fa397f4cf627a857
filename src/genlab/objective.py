"""The Objective: a model, a loss and a dataset, seen as a function of the parameters.

Every capability of genlab (training, curvature, gradient statistics, bounds) reads
the model through this one class, so the forward pass, the loss convention and the
mini-batching live in exactly one place.

Loss conventions (per example, then averaged over examples):

* ``"ce"``: cross-entropy of the logits against integer class indices.
* ``"mse"``: ``0.5 * ||f(x) - y||^2`` summed over outputs (Cohen et al. 2021's
  ``0.5 ||f(x) - y||^2`` with one-hot targets for classification).

Functional methods (:meth:`loss`, :meth:`grad`, :meth:`hvp`,
:meth:`per_sample_grads`, :meth:`input_jacobian`, :meth:`evaluate`) evaluate the
model in **eval mode** (dropout off, BatchNorm running statistics), so they are
deterministic functions of the parameters. :meth:`accumulate_grad`, used by the
training loop, runs in **train mode** and writes ``.grad`` of the model's own
parameters, exactly what a ``torch.optim`` optimizer consumes.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from genlab.objective import Objective
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Linear(3, 2)
    >>> x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    >>> obj = Objective(model, x, y, loss="ce")
    >>> v = {k: torch.ones_like(p) for k, p in obj.params().items()}
    >>> sorted(obj.hvp(v))
    ['bias', 'weight']
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from genlab.errors import ConfigError

Params = dict[str, torch.Tensor]

LOSSES = ("ce", "mse")


def loss_from_outputs(out: torch.Tensor, y: torch.Tensor, loss: str, reduction: str = "mean") -> torch.Tensor:
    """Per-example or mean loss of model outputs ``out`` against targets ``y``.

    ``loss`` is ``"ce"`` (integer targets) or ``"mse"`` (``0.5 ||out - y||^2`` per
    example, summed over outputs). ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"``.
    """
    if loss == "ce":
        per = nn.functional.cross_entropy(out, y, reduction="none")
    elif loss == "mse":
        diff = out - y.reshape(out.shape).to(out.dtype)
        per = 0.5 * diff.pow(2).reshape(diff.shape[0], -1).sum(dim=1)
    else:
        raise ConfigError(f"loss: unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
    if reduction == "mean":
        return per.mean()
    if reduction == "sum":
        return per.sum()
    return per


def correct_predictions(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of examples whose arg-max output matches the class in ``y``.

    ``y`` holds class indices (integer) or one-hot / score rows (float).
    """
    labels = y if y.dtype in (torch.int64, torch.int32) else y.argmax(dim=1)
    return (out.argmax(dim=1) == labels).sum()


class Objective:
    """Model + loss + dataset as a function of the parameters (torch.func based).

    Args:
        model: any ``nn.Module`` mapping a batch ``(B, *input_shape)`` to ``(B, out)``.
        x, y: the dataset (inputs; integer class indices for ``"ce"``, float
            targets for ``"mse"``). Moved to ``device`` once.
        loss: ``"ce"`` or ``"mse"`` (see module docstring).
        batch_size: examples per chunk when a method sums over the whole dataset;
            results do not depend on it (up to float rounding).
        device: where to compute; defaults to the model's device.
        classification: whether accuracy is defined (the targets are classes);
            default: integer targets, or float targets whose rows are one-hot.

    Parameters are passed as a ``{name: tensor}`` dict (the model's
    ``named_parameters`` names); ``None`` means the model's current parameters.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "ce",
                 batch_size: int = 1000, device: torch.device | str | None = None,
                 classification: bool | None = None):
        if loss not in LOSSES:
            raise ConfigError(f"loss: unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
        if len(x) != len(y):
            raise ConfigError(f"Objective: x has {len(x)} examples but y has {len(y)}")
        if batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1 (got {batch_size})")
        self.model = model
        first = next(model.parameters(), None)
        self.device = torch.device(device) if device is not None else (
            first.device if first is not None else torch.device("cpu"))
        dtype = first.dtype if first is not None else torch.get_default_dtype()
        self.x = x.to(self.device, dtype=dtype if x.is_floating_point() else x.dtype)
        self.y = y.to(self.device, dtype=dtype if y.is_floating_point() else y.dtype)
        self.loss_name = loss
        self.batch_size = int(batch_size)
        self.classification = _looks_like_classes(self.y) if classification is None else bool(classification)

    # ------------------------------------------------------------------ basics
    @property
    def n(self) -> int:
        """Number of examples in the dataset."""
        return len(self.x)

    def params(self) -> Params:
        """The model's trainable parameters by name (live tensors, not copies)."""
        return {k: p for k, p in self.model.named_parameters() if p.requires_grad}

    def num_params(self) -> int:
        """Total number of trainable scalars."""
        return sum(p.numel() for p in self.params().values())

    def buffers(self) -> Params:
        """The model's buffers (e.g. BatchNorm running statistics) by name."""
        return dict(self.model.named_buffers())

    def chunks(self, indices: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` chunks of at most ``batch_size`` examples covering ``indices`` (all if None)."""
        if indices is None:
            for start in range(0, self.n, self.batch_size):
                yield self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]
        else:
            indices = indices.to(self.device)
            for start in range(0, len(indices), self.batch_size):
                idx = indices[start:start + self.batch_size]
                yield self.x[idx], self.y[idx]

    @contextlib.contextmanager
    def eval_mode(self):
        """Temporarily put the model in eval mode (restores the previous mode)."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    def forward(self, x: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Model outputs for a batch, with ``params`` substituted when given."""
        if params is None:
            return self.model(x)
        return functional_call(self.model, ({**self.buffers(), **params},), (x,))

    def batch_loss(self, x: torch.Tensor, y: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None,
                   reduction: str = "mean") -> torch.Tensor:
        """Loss on one batch (differentiable), in whatever mode the model is in."""
        return loss_from_outputs(self.forward(x, params), y, self.loss_name, reduction)

    # ------------------------------------------------------- full-dataset sums
    def loss(self, params: Params | None = None, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Mean loss over the dataset (or ``indices``), eval mode, no graph kept."""
        total, count = 0.0, 0
        with torch.no_grad(), self.eval_mode():
            for xb, yb in self.chunks(indices):
                total = total + self.batch_loss(xb, yb, params, reduction="sum")
                count += len(xb)
        return torch.as_tensor(total) / count

    def loss_and_grad(self, params: Params | None = None,
                      indices: torch.Tensor | None = None) -> tuple[torch.Tensor, Params]:
        """Mean loss and its gradient over the dataset (or ``indices``), eval mode."""
        params = self._detached(params)
        wrt = {k: v.requires_grad_(True) for k, v in params.items()}
        total_grad = {k: torch.zeros_like(v) for k, v in wrt.items()}
        total, count = 0.0, 0
        with self.eval_mode():
            for xb, yb in self.chunks(indices):
                loss_sum = self.batch_loss(xb, yb, wrt, reduction="sum")
                grads = torch.autograd.grad(loss_sum, list(wrt.values()))
                for k, g in zip(wrt, grads):
                    total_grad[k] += g
                total = total + loss_sum.detach()
                count += len(xb)
        return torch.as_tensor(total) / count, {k: g / count for k, g in total_grad.items()}

    def grad(self, params: Params | None = None, indices: torch.Tensor | None = None) -> Params:
        """Gradient of the mean loss over the dataset (or ``indices``), eval mode."""
        return self.loss_and_grad(params, indices)[1]

    def hvp(self, v: Mapping[str, torch.Tensor], params: Params | None = None,
            indices: torch.Tensor | None = None) -> Params:
        """Hessian-vector product ``H v`` of the mean loss over the dataset (eval mode).

        Double backward (reverse-over-reverse) per chunk: on CPU it is as fast as
        forward-over-reverse and works for every module, BatchNorm included.
        """
        params = self._detached(params)
        wrt = {k: p.requires_grad_(True) for k, p in params.items()}
        vs = [v[k].to(self.device, wrt[k].dtype) for k in wrt]
        out = {k: torch.zeros_like(p) for k, p in wrt.items()}
        count = 0
        with self.eval_mode():
            for xb, yb in self.chunks(indices):
                loss_sum = self.batch_loss(xb, yb, wrt, reduction="sum")
                grads = torch.autograd.grad(loss_sum, list(wrt.values()), create_graph=True)
                dot = sum((g * u).sum() for g, u in zip(grads, vs))
                hv = torch.autograd.grad(dot, list(wrt.values()), allow_unused=True)
                for k, h in zip(wrt, hv):
                    if h is not None:
                        out[k] += h.detach()
                count += len(xb)
        return {k: h / count for k, h in out.items()}

    def evaluate(self, params: Params | None = None) -> dict[str, float]:
        """``{"loss": mean loss, "accuracy": fraction correct}`` over the dataset (eval mode).

        Accuracy is ``nan`` for regression targets (see ``classification``).
        """
        total, correct, count = 0.0, 0, 0
        classify = self.classification
        with torch.no_grad(), self.eval_mode():
            for xb, yb in self.chunks():
                out = self.forward(xb, params)
                total += float(loss_from_outputs(out, yb, self.loss_name, "sum"))
                if classify:
                    correct += int(correct_predictions(out, yb))
                count += len(xb)
        return {"loss": total / count, "accuracy": correct / count if classify else float("nan")}

    # -------------------------------------------------------- training support
    def accumulate_grad(self, indices: torch.Tensor | None = None, target_transform=None) -> float:
        """Mean loss over ``indices`` (all if None), backpropagated into ``.grad`` (train mode).

        Gradients are *added* to ``.grad`` (call ``optimizer.zero_grad()`` first),
        weighted so that the result is the gradient of the mean over the chosen
        examples however many chunks they take. Returns the mean loss.
        ``target_transform`` (optional) maps each chunk's targets before the loss
        (label noise), in chunk order.
        """
        count = self.n if indices is None else len(indices)
        total = 0.0
        self.model.train()
        for xb, yb in self.chunks(indices):
            if target_transform is not None:
                yb = target_transform(yb)
            loss_sum = self.batch_loss(xb, yb, reduction="sum")
            (loss_sum / count).backward()
            total += float(loss_sum.detach())
        return total / count

    # ------------------------------------------------- per-example quantities
    def per_sample_grads(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                         params: Params | None = None) -> Params:
        """Gradient of each example's loss, stacked: ``{name: (B, *param.shape)}`` (eval mode).

        Defaults to the whole dataset (computed in chunks of ``batch_size``).
        """
        if x is None:
            parts = [self.per_sample_grads(xb, yb, params) for xb, yb in self.chunks()]
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        params = self._detached(params)
        buffers = self.buffers()

        def one_loss(p, xi, yi):
            out = functional_call(self.model, ({**buffers, **p},), (xi.unsqueeze(0),))
            return loss_from_outputs(out, yi.unsqueeze(0), self.loss_name)

        with self.eval_mode():
            return vmap(grad(one_loss), in_dims=(None, 0, 0))(params, x.to(self.device), y.to(self.device))

    def input_jacobian(self, x: torch.Tensor | None = None, params: Params | None = None) -> torch.Tensor:
        """Input-output Jacobians ``d f(x_i) / d x_i``: shape ``(B, out_dim, *input_shape)`` (eval mode)."""
        if x is None:
            return torch.cat([self.input_jacobian(xb, params) for xb, _ in self.chunks()])
        params = self._detached(params)
        buffers = self.buffers()

        def one_out(xi):
            return functional_call(self.model, ({**buffers, **params},), (xi.unsqueeze(0),)).squeeze(0)

        with self.eval_mode():
            return vmap(jacrev(one_out))(x.to(self.device))

    # ---------------------------------------------------------------- helpers
    def _detached(self, params: Params | None) -> Params:
        src = self.params() if params is None else params
        return {k: v.detach().clone() if params is None else v.detach() for k, v in src.items()}


def _looks_like_classes(y: torch.Tensor) -> bool:
    """Integer class indices, or float rows that are one-hot (what ``mse`` classification uses)."""
    if not y.is_floating_point():
        return True
    if y.dim() != 2 or y.shape[1] < 2:
        return False
    return bool(((y == 0) | (y == 1)).all() and (y.sum(dim=1) == 1).all())


def params_to_vector(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate a parameter dict into one flat vector (dict order)."""
    return torch.cat([p.reshape(-1) for p in params.values()])


def vector_to_params(vec: torch.Tensor, like: Mapping[str, torch.Tensor]) -> Params:
    """Split a flat vector into a dict shaped like ``like`` (inverse of :func:`params_to_vector`)."""
    out, start = {}, 0
    for k, p in like.items():
        out[k] = vec[start:start + p.numel()].view_as(p)
        start += p.numel()
    if start != vec.numel():
        raise ValueError(f"vector has {vec.numel()} entries, parameters need {start}")
    return out
