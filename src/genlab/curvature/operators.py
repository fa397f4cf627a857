"""Curvature matrices as matrix-free symmetric operators on flat parameter vectors.

Every operator is a ``d x d`` symmetric matrix (``d`` = number of trainable
parameters) that is only ever touched through products ``A @ v``; eigen-solvers,
trace estimators and spectral densities take any of them. Each is a snapshot: it
is the matrix at the parameters it was built at (the Objective's current
parameters by default), over the whole training set (or ``indices``), summed in
the Objective's mini-batches, in eval mode.

* :class:`HessianOperator`: ``H = d^2 L / d theta^2`` of the mean loss, by double
  backward. With ``cache_graph=True`` (default when the graph fits, see below)
  the first-order graph of every chunk is built once and each product is one
  extra backward pass through it, about half the cost of rebuilding it.
* :class:`GaussNewtonOperator`: ``G = (1/n) sum_i J_i^T H_out,i J_i`` (``J_i`` the
  parameter Jacobian of the outputs, ``H_out`` the loss Hessian in the outputs,
  which the loss provides (:mod:`genlab.losses`): the identity for ``0.5 ||f - y||^2``,
  ``diag(p) - p p^T`` for cross-entropy).
* :class:`EmpiricalFisherOperator`: ``F = (1/n) sum_i g_i g_i^T`` from per-sample gradients.
* :class:`PreconditionedOperator`: ``P^-1/2 A P^-1/2`` for a diagonal ``P``, whose
  eigenvalues are those of ``P^-1 A`` (the preconditioned sharpness of Adam).

Example::

    >>> import torch
    >>> from torch import nn
    >>> from genlab.objective import Objective
    >>> from genlab.curvature import HessianOperator
    >>> _ = torch.manual_seed(0)
    >>> obj = Objective(nn.Linear(3, 1).double(), torch.randn(20, 3).double(), torch.randn(20, 1).double(), "mse")
    >>> H = HessianOperator(obj)
    >>> H.dense().shape
    torch.Size([4, 4])
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from genlab.objective import Objective, Params, params_to_vector, vector_to_params

# Above this many (examples x parameters) the cached double-backward graphs would
# likely take more memory than they save time: rebuild them for each product.
CACHE_GRAPH_LIMIT = 2_000_000_000


class CurvatureOperator:
    """A symmetric ``d x d`` matrix known through its products with flat vectors.

    Subclasses implement :meth:`_matvec` (one vector ``(d,)`` -> ``(d,)``). The
    operator counts its products in ``matvecs`` (what every solver reports).
    """

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device):
        self.dim, self.dtype, self.device = int(dim), dtype, torch.device(device)
        self.matvecs = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.dim, self.dim)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A @ v`` for ``v`` of shape ``(d,)`` or ``(d, k)`` (k products)."""
        v = torch.as_tensor(v).to(self.device, self.dtype)
        if v.dim() == 2:
            return torch.stack([self.matvec(c) for c in v.T], dim=1)
        if v.shape != (self.dim,):
            raise ValueError(f"vector of shape {tuple(v.shape)}; this operator is {self.dim} x {self.dim}")
        self.matvecs += 1
        return self._matvec(v)

    __matmul__ = matvec

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def dense(self) -> torch.Tensor:
        """The explicit ``d x d`` matrix, column by column (for tests and tiny models only)."""
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        cols = [self.matvec(eye[:, j]) for j in range(self.dim)]
        return torch.stack(cols, dim=1)

    def to_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` over float64 numpy vectors (for cross-checks)."""
        import numpy as np
        from scipy.sparse.linalg import LinearOperator

        def mv(x):
            out = self.matvec(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).reshape(-1))
            return out.detach().cpu().double().numpy()

        return LinearOperator(self.shape, matvec=mv, rmatvec=mv, dtype=np.float64)


class _ObjectiveOperator(CurvatureOperator):
    """Shared set-up: a snapshot of the parameters, the data chunks, and flat <-> dict conversion."""

    def __init__(self, objective: Objective, params: Params | None = None, indices: torch.Tensor | None = None):
        src = objective.params() if params is None else params
        self.objective = objective
        self.params = {k: p.detach().clone() for k, p in src.items()}
        self.indices = indices
        objective.check_deterministic()  # a loader must give the same batches on every pass
        self.n = objective.n if indices is None else len(indices)
        first = next(iter(self.params.values()))
        super().__init__(sum(p.numel() for p in self.params.values()), first.dtype, objective.device)

    def split(self, v: torch.Tensor) -> Params:
        """A flat vector as a parameter dict (views)."""
        return vector_to_params(v, self.params)

    def param_vector(self) -> torch.Tensor:
        """The parameters this operator is taken at, flat."""
        return params_to_vector(self.params)


class HessianOperator(_ObjectiveOperator):
    """Hessian of the Objective's mean loss (eval mode), by double backward.

    Args:
        objective: model, loss and data.
        params: where to take the Hessian (default: the model's current parameters).
        indices: a subset of the training points (default: all).
        cache_graph: keep each chunk's gradient graph between products (one backward
            per product instead of a forward and two backwards). ``None`` (default)
            caches for in-memory data when ``n x d`` is below :data:`CACHE_GRAPH_LIMIT`;
            data streamed from a loader is never cached (one batch's graph at a time).

    Also computes, for free, the mean loss and gradient at ``params``
    (:attr:`loss`, :attr:`gradient`) when the graph is cached.
    """

    def __init__(self, objective: Objective, params: Params | None = None, indices: torch.Tensor | None = None,
                 cache_graph: bool | None = None):
        super().__init__(objective, params, indices)
        if cache_graph is None:
            cache_graph = objective.in_memory and self.n * self.dim <= CACHE_GRAPH_LIMIT
        self.cache_graph = bool(cache_graph)
        self._graphs: list[tuple[torch.Tensor, ...]] = []
        self.loss: float | None = None
        self.gradient: torch.Tensor | None = None
        if self.cache_graph:
            self._build_graphs()

    def _build_graphs(self) -> None:
        obj = self.objective
        self._wrt = {k: p.clone().requires_grad_(True) for k, p in self.params.items()}
        total, grad_sum = 0.0, None
        with obj.eval_mode():
            for xb, yb in obj.chunks(self.indices):
                loss_sum, grads = obj.batch_hvp_graph(xb, yb, self._wrt)
                self._graphs.append(grads)
                flat = torch.cat([g.detach().reshape(-1) for g in grads])
                grad_sum = flat if grad_sum is None else grad_sum + flat
                total += float(loss_sum.detach())
        self.loss = total / self.n
        self.gradient = grad_sum / self.n

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        if not self.cache_graph:
            hv = self.objective.hvp(self.split(v), self.params, self.indices)
            return params_to_vector(hv)
        vs = list(self.split(v).values())
        wrt = list(self._wrt.values())
        out = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for grads in self._graphs:
            hv = torch.autograd.grad(grads, wrt, grad_outputs=vs, retain_graph=True, allow_unused=True)
            out += torch.cat([(torch.zeros_like(w) if h is None else h).reshape(-1) for h, w in zip(hv, wrt)])
        return out / self.n

    def release(self) -> None:
        """Free the cached graphs (the operator then rebuilds them for each product)."""
        self._graphs, self.cache_graph = [], False


class GaussNewtonOperator(_ObjectiveOperator):
    """Generalised Gauss-Newton ``G = (1/n) sum_i J_i^T H_out,i J_i`` (eval mode), one JVP + one VJP per chunk."""

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return params_to_vector(self.objective.ggn_product(self.split(v), self.params, self.indices))


class EmpiricalFisherOperator(_ObjectiveOperator):
    """Empirical Fisher ``F = (1/n) sum_i g_i g_i^T`` (uncentred second moment of per-sample gradients)."""

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        obj = self.objective
        out = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for xb, yb in obj.chunks(self.indices):
            g = flat_per_sample_grads(obj, xb, yb, self.params)
            out += g.T @ (g @ v)
        return out / self.n


def flat_per_sample_grads(objective: Objective, x, y: torch.Tensor,
                          params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Per-sample gradients of a batch as one ``(B, d)`` matrix (parameter order of the Objective)."""
    g = objective.per_sample_grads(x, y, dict(params) if params is not None else None)
    return torch.cat([t.reshape(len(y), -1) for t in g.values()], dim=1)


class PreconditionedOperator(CurvatureOperator):
    """``P^-1/2 A P^-1/2`` for a positive diagonal ``P`` (flat vector): same eigenvalues as ``P^-1 A``.

    Its top eigenvalue is the preconditioned sharpness of an adaptive method that
    steps ``-lr P^-1 g`` (Cohen et al. 2022, "Adaptive gradient methods at the edge of stability").
    """

    def __init__(self, op: CurvatureOperator, p_diag: torch.Tensor):
        p_diag = torch.as_tensor(p_diag).to(op.device, op.dtype).reshape(-1)
        if p_diag.numel() != op.dim:
            raise ValueError(f"preconditioner has {p_diag.numel()} entries; the operator is {op.dim} x {op.dim}")
        if not bool((p_diag > 0).all()):
            raise ValueError("preconditioner must be positive")
        super().__init__(op.dim, op.dtype, op.device)
        self.op, self.scale = op, p_diag.rsqrt()

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.scale * self.op.matvec(self.scale * v)
