"""The Objective: a model, a loss and a dataset, seen as a function of the parameters.

Every capability of genlab (training, curvature, gradient statistics, bounds) reads
the model through this one class, so the forward pass, the loss convention and the
mini-batching live in exactly one place.

``Objective(model, loss, data)``, as curvlinops and PyHessian take them:

* ``loss``: a name (``"ce"``, ``"mse"``, ``"bce"``, ``"huber"``), a :class:`genlab.losses.Loss`, any
  ``torch.nn`` loss (``nn.CrossEntropyLoss(label_smoothing=0.1)``) or a function ``loss(outputs, targets)``
  (see :mod:`genlab.losses` for the conventions). The Objective's loss is the mean over examples.
* ``data``: ``(inputs, targets)`` tensors in memory, or any re-iterable of ``(inputs, targets)`` batches
  (a ``DataLoader``), streamed one batch at a time (:mod:`genlab.batching`). Inputs may be a tensor, a
  tuple of tensors (``model(*inputs)``) or a dict (``model(**inputs)``).
* ``output``: when the model returns a dict (or a tuple), the key (index) of the tensor the loss takes.

The older form ``Objective(model, x, y, loss="ce")`` still works.

Functional methods (:meth:`loss`, :meth:`grad`, :meth:`hvp`, :meth:`ggn_product`,
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
    >>> obj = Objective(model, nn.CrossEntropyLoss(label_smoothing=0.1), (x, y))
    >>> v = {k: torch.ones_like(p) for k, p in obj.params().items()}
    >>> sorted(obj.hvp(v))
    ['bias', 'weight']
    >>> loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    >>> streamed = Objective(model, nn.CrossEntropyLoss(label_smoothing=0.1), loader)
    >>> bool(torch.allclose(streamed.hvp(v)["weight"], obj.hvp(v)["weight"]))
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, jvp, vjp, vmap

from genlab.batching import LoaderData, TensorData, map_tensors, to_device
from genlab.errors import ConfigError
from genlab.losses import Loss, as_loss

Params = dict[str, torch.Tensor]

LOSSES = ("ce", "mse")  # the names datasets default to; genlab.losses.LOSSES has every name


def loss_from_outputs(out: torch.Tensor, y: torch.Tensor, loss: str | Loss, reduction: str = "mean") -> torch.Tensor:
    """Per-example or mean loss of model outputs ``out`` against targets ``y``.

    ``loss`` is anything :func:`genlab.losses.as_loss` takes; ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"``.
    """
    fn = as_loss(loss)
    if reduction == "none":
        return fn.per_example(out, y)
    total = fn.batch_sum(out, y)
    return total / len(out) if reduction == "mean" else total


def correct_predictions(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of examples whose arg-max output matches the class in ``y``.

    ``y`` holds class indices (integer) or one-hot / score rows (float).
    """
    labels = y if y.dtype in (torch.int64, torch.int32) else y.argmax(dim=1)
    return (out.argmax(dim=1) == labels).sum()


def _unsqueeze(inputs: Any) -> Any:
    return map_tensors(inputs, lambda t: t.unsqueeze(0))


class Objective:
    """Model + loss + dataset as a function of the parameters (torch.func based).

    Args:
        model: any ``nn.Module``; its output for a batch is ``(B, k)`` (or a dict / tuple, see ``output``).
        loss: a name, a :class:`genlab.losses.Loss`, a ``torch.nn`` loss or a function (module docstring).
        data: ``(inputs, targets)`` tensors, or a re-iterable of such batches (a ``DataLoader``).
        batch_size: examples per chunk when a method sums over in-memory data; results do not depend on it
            (up to float rounding). A loader's own batches are used as they come.
        device: where to compute; defaults to the model's device.
        classification: whether accuracy is defined (the targets are classes); default: integer targets, or
            float targets whose rows are one-hot.
        output: the key (or index, or a function) selecting the tensor the loss takes from a model that
            returns a dict or a tuple.

    Parameters are passed as a ``{name: tensor}`` dict (the model's ``named_parameters`` names); ``None``
    means the model's current parameters.
    """

    def __init__(self, model: nn.Module, *args: Any, loss: Any = None, data: Any = None, batch_size: int = 1000,
                 device: torch.device | str | None = None, classification: bool | None = None,
                 output: str | int | Callable | None = None):
        if args and isinstance(args[0], torch.Tensor):  # the older form Objective(model, x, y[, loss])
            if len(args) < 2 or len(args) > 3 or data is not None:
                raise ConfigError("Objective: give Objective(model, loss, data) (or the older (model, x, y, loss))")
            data = (args[0], args[1])
            loss = args[2] if len(args) == 3 else (loss if loss is not None else "ce")
        elif args:
            if len(args) > 2 or (loss is not None) or (len(args) == 2 and data is not None):
                raise ConfigError("Objective: give Objective(model, loss, data)")
            loss, data = args[0], (args[1] if len(args) == 2 else data)
        if loss is None or data is None:
            raise ConfigError("Objective: needs a loss and data: Objective(model, loss, data)")
        if batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1 (got {batch_size})")
        self.model = model
        first = next(model.parameters(), None)
        self.device = torch.device(device) if device is not None else (
            first.device if first is not None else torch.device("cpu"))
        self.dtype = first.dtype if first is not None else torch.get_default_dtype()
        self.loss_fn = as_loss(loss)
        self.output = output
        self.batch_size = int(batch_size)
        if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], torch.Tensor):
            self.data: TensorData | LoaderData = TensorData(data[0], data[1], self.device, self.dtype)
        elif isinstance(data, TensorData | LoaderData):
            self.data = data
        else:
            self.data = LoaderData(data, self.device, self.dtype)
        self._classification = classification

    def with_model(self, model: nn.Module) -> Objective:
        """The same loss and data (not copied) on another model, e.g. the run's model in float64."""
        first = next(model.parameters(), None)
        data = self.data
        if isinstance(data, TensorData) and first is not None and first.dtype != self.dtype:
            data = TensorData(data.inputs, data.targets, self.device, first.dtype)
        elif isinstance(data, LoaderData) and first is not None:
            data = LoaderData(data.loader, self.device, first.dtype)
        return Objective(model, self.loss_fn, data, batch_size=self.batch_size, device=self.device,
                         classification=self._classification, output=self.output)

    def subset(self, indices: torch.Tensor | None = None, model: nn.Module | None = None) -> Objective:
        """The same loss on the examples ``indices`` only (all if None), held apart from the rest, on ``model``
        (default: this Objective's), on its device and in its precision.

        In-memory rows are copied; a ``DataLoader`` is replaced by one over ``Subset(dataset, indices)`` that
        reads only those examples (:meth:`genlab.batching.LoaderData.subset` says which loaders can be).
        What a rank of a sharded computation keeps: ``objective.subset(shard_indices(objective.n, rank,
        size))``; once the full Objective is dropped, that rank holds (and has moved to its device) its shard
        alone. Unlike ``indices=`` arguments of the operators, which stream a subset of data held in full.
        """
        model = self.model if model is None else model
        first = next(model.parameters(), None)
        device = first.device if first is not None else self.device
        dtype = first.dtype if first is not None else self.dtype
        return Objective(model, self.loss_fn, self.data.subset(indices, device, dtype), batch_size=self.batch_size,
                         device=device, classification=self._classification, output=self.output)

    # ------------------------------------------------------------------ basics
    @property
    def n(self) -> int:
        """Number of examples in the dataset."""
        return self.data.n

    @property
    def in_memory(self) -> bool:
        """Whether the data is held as tensors (subsets by index are then possible)."""
        return self.data.in_memory

    @property
    def loss_name(self) -> str:
        """The loss's short name (``"ce"``, ``"mse"``, ... or the user function's name)."""
        return self.loss_fn.name

    @property
    def x(self) -> Any:
        """The inputs, when the data is in memory."""
        return self._memory().inputs

    @property
    def y(self) -> torch.Tensor:
        """The targets, when the data is in memory."""
        return self._memory().targets

    def _memory(self) -> TensorData:
        if not isinstance(self.data, TensorData):
            raise ConfigError("this Objective streams a data loader; this computation needs the data in memory "
                              "(give (inputs, targets) tensors)")
        return self.data

    @property
    def classification(self) -> bool:
        """Whether accuracy is defined (class targets)."""
        if self._classification is None:
            targets = self.data.targets if isinstance(self.data, TensorData) else next(self.data.batches())[1]
            self._classification = _looks_like_classes(targets)
        return self._classification

    def params(self) -> Params:
        """The model's trainable parameters by name (live tensors, not copies)."""
        return {k: p for k, p in self.model.named_parameters() if p.requires_grad}

    def num_params(self) -> int:
        """Total number of trainable scalars."""
        return sum(p.numel() for p in self.params().values())

    def buffers(self) -> Params:
        """The model's buffers (e.g. BatchNorm running statistics) by name."""
        return dict(self.model.named_buffers())

    def chunks(self, indices: torch.Tensor | None = None) -> Iterator[tuple[Any, torch.Tensor]]:
        """Yield ``(inputs, targets)`` batches covering ``indices`` (all if None), on the Objective's device.

        In-memory data comes in chunks of ``batch_size``; a loader's batches come as the loader gives them.
        """
        yield from self.data.batches(self.batch_size, indices)

    def check_deterministic(self) -> None:
        """For loader data: refuse one whose batches change between passes (full-batch curvature needs it)."""
        if isinstance(self.data, LoaderData):
            self.data.check_deterministic()

    def num_outputs(self) -> int:
        """Number of model outputs per example (e.g. classes), from one example."""
        with torch.no_grad(), self.eval_mode():
            return int(self.forward(self.data.first_inputs()).reshape(1, -1).shape[1])

    @contextlib.contextmanager
    def eval_mode(self):
        """Temporarily put the model in eval mode (restores the previous mode)."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    def _select(self, out: Any) -> torch.Tensor:
        if self.output is not None:
            if callable(self.output):
                return self.output(out)
            try:
                return out[self.output]
            except (KeyError, IndexError, TypeError):
                keys = list(out) if isinstance(out, Mapping) else f"{len(out)} entries"
                raise ConfigError(f"output: the model's output has no {self.output!r} (it has {keys})") from None
        if isinstance(out, torch.Tensor):
            return out
        if isinstance(out, Mapping):
            raise ConfigError(f"the model returns a dict with keys {list(out)}; pass output=KEY to the Objective "
                              f"to say which one the loss takes")
        raise ConfigError(f"the model returns {type(out).__name__}; pass output=INDEX (or a function) to the "
                          f"Objective to say which tensor the loss takes")

    def _call(self, module: nn.Module, state: Mapping[str, torch.Tensor] | None, inputs: Any) -> Any:
        if isinstance(inputs, Mapping):
            args, kwargs = (), dict(inputs)
        elif isinstance(inputs, (tuple, list)):
            args, kwargs = tuple(inputs), {}
        else:
            args, kwargs = (inputs,), {}
        if state is None:
            return module(*args, **kwargs)
        return functional_call(module, (dict(state),), args, kwargs)

    def forward(self, x: Any, params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Model outputs for a batch of inputs, with ``params`` substituted when given."""
        state = None if params is None else {**self.buffers(), **params}
        return self._select(self._call(self.model, state, x))

    def batch_loss(self, x: Any, y: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None,
                   reduction: str = "mean") -> torch.Tensor:
        """Loss on one batch (differentiable), in whatever mode the model is in."""
        out = self.forward(x, params)
        if reduction == "none":
            return self.loss_fn.per_example(out, y)
        total = self.loss_fn.batch_sum(out, y)
        return total / len(y) if reduction == "mean" else total

    # ------------------------------------------------------- full-dataset sums
    def loss(self, params: Params | None = None, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Mean loss over the dataset (or ``indices``), eval mode, no graph kept."""
        total, count = 0.0, 0
        with torch.no_grad(), self.eval_mode():
            for xb, yb in self.chunks(indices):
                total = total + self.batch_loss(xb, yb, params, reduction="sum")
                count += len(yb)
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
                grads = torch.autograd.grad(loss_sum, list(wrt.values()), allow_unused=True)
                for k, g in zip(wrt, grads):
                    if g is not None:
                        total_grad[k] += g
                total = total + loss_sum.detach()
                count += len(yb)
        return torch.as_tensor(total) / count, {k: g / count for k, g in total_grad.items()}

    def grad(self, params: Params | None = None, indices: torch.Tensor | None = None) -> Params:
        """Gradient of the mean loss over the dataset (or ``indices``), eval mode."""
        return self.loss_and_grad(params, indices)[1]

    def batch_hvp_graph(self, xb: Any, yb: torch.Tensor, wrt: Params) -> tuple[torch.Tensor, tuple]:
        """One batch's summed loss and its gradient with the graph kept (for repeated Hessian products)."""
        loss_sum = self.batch_loss(xb, yb, wrt, reduction="sum")
        grads = torch.autograd.grad(loss_sum, list(wrt.values()), create_graph=True, allow_unused=True)
        grads = tuple(torch.zeros_like(w) if g is None else g for g, w in zip(grads, wrt.values()))
        return loss_sum, grads

    def hvp(self, v: Mapping[str, torch.Tensor], params: Params | None = None,
            indices: torch.Tensor | None = None) -> Params:
        """Hessian-vector product ``H v`` of the mean loss over the dataset (eval mode).

        Double backward (reverse-over-reverse) per batch: on CPU it is as fast as
        forward-over-reverse and works for every module, BatchNorm included. One
        batch's graph is alive at a time.
        """
        params = self._detached(params)
        wrt = {k: p.requires_grad_(True) for k, p in params.items()}
        vs = [v[k].to(self.device, wrt[k].dtype) for k in wrt]
        out = {k: torch.zeros_like(p) for k, p in wrt.items()}
        count = 0
        with self.eval_mode():
            for xb, yb in self.chunks(indices):
                _, grads = self.batch_hvp_graph(xb, yb, wrt)
                dot = sum((g * u).sum() for g, u in zip(grads, vs))
                hv = torch.autograd.grad(dot, list(wrt.values()), allow_unused=True)
                for k, h in zip(wrt, hv):
                    if h is not None:
                        out[k] += h.detach()
                count += len(yb)
        return {k: h / count for k, h in out.items()}

    def ggn_product(self, v: Mapping[str, torch.Tensor], params: Params | None = None,
                    indices: torch.Tensor | None = None) -> Params:
        """Generalised Gauss-Newton product ``G v = (1/n) sum_i J_i^T C_i J_i v`` (eval mode).

        ``J_i``: the parameter Jacobian of the outputs, ``C_i``: the loss's output Hessian
        (``loss.output_hessian_product``); one JVP and one VJP per batch.
        """
        params = self._detached(params)
        vd = {k: v[k].to(self.device, p.dtype) for k, p in params.items()}
        buffers = self.buffers()
        out = {k: torch.zeros_like(p) for k, p in params.items()}
        count = 0
        with self.eval_mode():
            for xb, yb in self.chunks(indices):

                def f(p, xb=xb):
                    return self._select(self._call(self.model, {**buffers, **p}, xb))

                outputs, jv = jvp(f, (params,), (vd,))
                _, pullback = vjp(f, params)
                cu = self.loss_fn.output_hessian_product(outputs, yb, jv)
                (g,) = pullback(cu)
                for k in out:
                    out[k] += g[k]
                count += len(yb)
        return {k: t / count for k, t in out.items()}

    def evaluate(self, params: Params | None = None) -> dict[str, float]:
        """``{"loss": mean loss, "accuracy": fraction correct}`` over the dataset (eval mode).

        Accuracy is ``nan`` for regression targets (see ``classification``).
        """
        total, correct, count = 0.0, 0, 0
        classify = self.classification
        with torch.no_grad(), self.eval_mode():
            for xb, yb in self.chunks():
                out = self.forward(xb, params)
                total += float(self.loss_fn.batch_sum(out, yb))
                if classify:
                    correct += int(correct_predictions(out, yb))
                count += len(yb)
        return {"loss": total / count, "accuracy": correct / count if classify else float("nan")}

    # -------------------------------------------------------- training support
    def accumulate_grad(self, indices: torch.Tensor | None = None, target_transform=None,
                        batch: tuple[Any, torch.Tensor] | None = None, input_transform=None) -> float:
        """Mean loss over ``indices`` (all if None), or over one given ``batch``, backpropagated into ``.grad``.

        Train mode. Gradients are *added* to ``.grad`` (call ``optimizer.zero_grad()`` first),
        weighted so that the result is the gradient of the mean over the chosen
        examples however many chunks they take. Returns the mean loss.
        ``target_transform`` (optional) maps each chunk's targets before the loss
        (label noise), in chunk order; ``input_transform`` maps each chunk's inputs (data augmentation,
        :mod:`genlab.train.augment`).
        """
        if batch is not None:
            chunks = [(to_device(batch[0], self.device, self.dtype), to_device(batch[1], self.device, self.dtype))]
            count = len(chunks[0][1])
        else:
            chunks = self.chunks(indices)
            count = self.n if indices is None else len(indices)
        total = 0.0
        self.model.train()
        for xb, yb in chunks:
            if target_transform is not None:
                yb = target_transform(yb)
            if input_transform is not None:
                xb = input_transform(xb)
            loss_sum = self.batch_loss(xb, yb, reduction="sum")
            (loss_sum / count).backward()
            total += float(loss_sum.detach())
        return total / count

    # ------------------------------------------------- per-example quantities
    def per_sample_grads(self, x: Any = None, y: torch.Tensor | None = None,
                         params: Params | None = None) -> Params:
        """Gradient of each example's loss, stacked: ``{name: (B, *param.shape)}`` (eval mode).

        Defaults to the whole dataset (computed batch by batch).
        """
        if x is None:
            parts = [self.per_sample_grads(xb, yb, params) for xb, yb in self.chunks()]
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        params = self._detached(params)
        buffers = self.buffers()

        def one_loss(p, xi, yi):
            out = self._select(self._call(self.model, {**buffers, **p}, _unsqueeze(xi)))
            return self.loss_fn.batch_sum(out, yi.unsqueeze(0))

        with self.eval_mode():
            return vmap(grad(one_loss), in_dims=(None, 0, 0))(params, x, y.to(self.device))

    def output_jacobians(self, x: Any, params: Params | None = None) -> torch.Tensor:
        """Parameter Jacobians of the outputs per example, flat: ``(B, k, d)`` (eval mode)."""
        params = self._detached(params)
        buffers = self.buffers()

        def f(p, xi):
            return self._select(self._call(self.model, {**buffers, **p}, _unsqueeze(xi))).squeeze(0)

        with self.eval_mode():
            J = vmap(jacrev(f), in_dims=(None, 0))(params, x)
        B = len(next(iter(J.values())))
        k = next(iter(J.values())).shape[1]
        return torch.cat([t.reshape(B, k, -1) for t in J.values()], dim=2)

    def input_jacobian(self, x: Any = None, params: Params | None = None) -> torch.Tensor:
        """Input-output Jacobians ``d f(x_i) / d x_i``: shape ``(B, out_dim, *input_shape)`` (eval mode).

        Needs tensor inputs (the Jacobian in a tuple or dict of inputs is not one matrix).
        """
        if x is None:
            return torch.cat([self.input_jacobian(xb, params) for xb, _ in self.chunks()])
        if not isinstance(x, torch.Tensor):
            raise ConfigError("input-output Jacobians need tensor inputs (this model takes a tuple or dict)")
        params = self._detached(params)
        buffers = self.buffers()

        def one_out(xi):
            return self._select(self._call(self.model, {**buffers, **params}, xi.unsqueeze(0))).squeeze(0)

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
