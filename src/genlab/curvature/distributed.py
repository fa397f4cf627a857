"""Curvature over a dataset sharded across processes (``torch.distributed``: gloo on CPU, NCCL on CUDA).

Every curvature operator is a mean over the training points, ``A = (1/n) sum_i A_i``, so a rank holding the
shard ``S_r`` computes its own mean ``A_r v`` and the global product is ``sum_r (|S_r| / n) A_r v``, one
all-reduce of a ``d``-vector per product. :class:`ShardedOperator` wraps any operator that way; every solver
(Lanczos, Hutch++, SLQ, power iteration) then runs unchanged on every rank. The solvers' random probes and
start vectors come from one seeded generator, identical on every rank, and the all-reduced products are the
same on every rank, so every rank builds the same Krylov basis and the results do not depend on the number of
processes beyond the order of floating-point sums (agreement to ~1e-12 relative in float64).

Inside your own ``torchrun`` job (the process group initialised by you), each rank wraps the operator on its
own shard::

    local = shard_objective(Objective(model, loss, loader), rank, world_size)  # or your own per-rank loader
    H = ShardedOperator(HessianOperator(local))
    top = lanczos(H, k=5, generator=torch.Generator().manual_seed(0))   # the same on every rank

``genlab curvature RUN --nproc N`` starts ``N`` local processes itself (:func:`spawn`), each on the contiguous
shard :func:`shard_indices` gives it. Each rank loads the run on the CPU, keeps its shard alone
(:func:`shard_objective`: rows copied, or a DataLoader over its examples only) and moves only that to its
device, so device memory holds ``n / N`` points per rank (rank 0 also keeps the full set when it computes
``--jacobian``'s global terms). The CPU's peak resident memory still includes one full load per rank.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import torch

from genlab.curvature.operators import CurvatureOperator


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised default process group, else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_indices(n: int, rank: int, size: int) -> torch.Tensor:
    """The contiguous block of ``range(n)`` that rank ``rank`` of ``size`` holds (sizes differ by at most one)."""
    if not 0 <= rank < size or n < size:
        raise ValueError(f"need 0 <= rank < size <= n (got rank {rank}, size {size}, n {n})")
    return torch.arange(n).tensor_split(size)[rank]


class ShardedOperator(CurvatureOperator):
    """The global mean operator from each rank's operator on its shard: products all-reduced, weighted by size.

    Args:
        local: this rank's operator (a mean over its ``local.n`` points; any :class:`CurvatureOperator` with an
            ``n`` attribute, or give ``local_n``).
        local_n: the number of points behind ``local`` (default ``local.n``).
        group: the process group (default: the world).

    ``loss`` and ``gradient`` (when the local operator has them) are the global mean loss and gradient.
    """

    def __init__(self, local: CurvatureOperator, local_n: int | None = None, group: Any = None):
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("ShardedOperator needs an initialised torch.distributed process group")
        super().__init__(local.dim, local.dtype, local.device)
        self.local, self.group = local, group
        local_n = int(local.n if local_n is None else local_n)
        self.n = int(self._sum(torch.tensor([float(local_n)], dtype=torch.float64, device=self.device)).item())
        self.weight = local_n / self.n
        self.loss: float | None = None
        self.gradient: torch.Tensor | None = None
        if getattr(local, "loss", None) is not None:
            self.loss = float(self._sum(torch.tensor([local.loss * self.weight], dtype=torch.float64,
                                                     device=self.device)).item())
        if getattr(local, "gradient", None) is not None:
            self.gradient = self._sum(local.gradient * self.weight)

    def _sum(self, t: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return t

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self._sum(self.local.matvec(v) * self.weight)

    def release(self) -> None:
        if hasattr(self.local, "release"):
            self.local.release()


def shard_objective(objective, rank: int, size: int, model: torch.nn.Module | None = None):
    """Rank ``rank``'s contiguous :func:`shard_indices` shard of ``objective``'s points as an Objective of its
    own (:meth:`~genlab.objective.Objective.subset`: rows copied, or a DataLoader over those examples alone),
    on ``model``'s device. Drop the full Objective afterwards and the rank holds its shard only."""
    return objective.subset(shard_indices(objective.n, rank, size), model=model)


def sharded_mean(local_value: float, local_n: int, group: Any = None) -> float:
    """The global mean of a per-point quantity from each rank's mean over its ``local_n`` points."""
    import torch.distributed as dist

    t = torch.tensor([local_value * local_n, float(local_n)], dtype=torch.float64)
    backend = dist.get_backend(group)
    if backend == "nccl":
        t = t.cuda()
    dist.all_reduce(t, group=group)
    return float(t[0] / t[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, size: int, port: int, backend: str, fn: Callable, args: tuple, kwargs: dict) -> None:
    import torch.distributed as dist

    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    try:
        fn(*args, **kwargs)
        # every rank done before any tears its sockets down (a rank leaving early can abort a peer still
        # inside gloo); on an error, skip it: the failing rank must not wait for the others
        dist.barrier()
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable, nproc: int, *args, backend: str = "gloo", **kwargs) -> None:
    """Run ``fn(*args, **kwargs)`` in ``nproc`` local processes joined in one process group (``backend``:
    ``gloo`` for CPU, ``nccl`` for one CUDA device per rank). ``fn`` must be importable (a module-level
    function). A failing rank's error is raised here as one :class:`~genlab.errors.GenlabError` line (exit
    status 2 on the command line: the ranks fail on bad input, a missing or corrupt run, first)."""
    from genlab.errors import GenlabError

    import torch.multiprocessing as mp

    if nproc < 1:
        raise ValueError(f"nproc must be >= 1 (got {nproc})")
    if backend == "nccl" and torch.cuda.device_count() < nproc:
        raise GenlabError(f"--nproc {nproc} with CUDA needs {nproc} GPUs; this machine has "
                         f"{torch.cuda.device_count()}")
    try:
        mp.spawn(_worker, args=(nproc, _free_port(), backend, fn, args, kwargs), nprocs=nproc, join=True)
    except mp.ProcessRaisedException as err:  # the worker's traceback: keep its last line
        lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
        raise GenlabError(f"a worker process failed: {lines[-1] if lines else err}") from None


def gather_rows(t: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Every rank's rows of ``t`` concatenated in rank order (the same tensor on every rank); with the
    contiguous :func:`shard_indices` shards that is the global order of the points."""
    import torch.distributed as dist

    size = dist.get_world_size(group)
    count = torch.tensor([t.shape[0]], device=t.device)
    counts = [torch.zeros_like(count) for _ in range(size)]
    dist.all_gather(counts, count, group=group)
    top = int(max(c.item() for c in counts))
    padded = torch.zeros((top, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[:t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([p[:int(c.item())] for p, c in zip(parts, counts)])


def sharded_jacobian_norms(objective, group: Any = None, shard: bool = True):
    """:func:`~genlab.curvature.jacobian.jacobian_norms` of every training point, each rank computing its
    shard's, gathered in rank order. ``objective`` holds all points on every rank and each takes its
    :func:`shard_indices` shard, or, with ``shard=False``, it is this rank's shard already (what
    :func:`shard_objective` gives)."""
    import torch.distributed as dist

    from genlab.curvature.jacobian import JacobianNorms, jacobian_norms

    rank, size = dist.get_rank(group), dist.get_world_size(group)
    local = jacobian_norms(objective, indices=shard_indices(objective.n, rank, size) if shard else None)
    return JacobianNorms(gather_rows(local.frobenius, group), gather_rows(local.spectral, group))


class CenteredOperator(CurvatureOperator):
    """``A - m m^T`` for a symmetric operator ``A`` and a vector ``m``: the per-sample gradient covariance
    ``C = F - g g^T`` from the empirical Fisher ``F`` (sharded) and the global mean gradient ``g``."""

    def __init__(self, op: CurvatureOperator, mean: torch.Tensor):
        super().__init__(op.dim, op.dtype, op.device)
        self.op, self.mean = op, mean.to(op.device, op.dtype)

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.op.matvec(v) - self.mean * torch.dot(self.mean, v)


def sharded_gradient_covariance(objective, top_k: int = 10, *, tol: float = 1e-8, seed: int = 0,
                                group: Any = None, shard: bool = True) -> dict:
    """Trace and top eigenvalues of the (centred) per-sample gradient covariance over all ranks' shards, by
    Lanczos on ``F - g g^T`` (never the ``n x n`` Gram matrix of
    :func:`~genlab.curvature.gradcov.gradient_covariance`, which needs every gradient in one place). Each rank
    passes an Objective holding all points and takes its :func:`shard_indices` shard, or, with
    ``shard=False`` (your own job), an Objective on its own shard. Returns ``trace``, ``eigenvalues``
    (descending), ``n``, ``mean_gradient_norm``."""
    import torch.distributed as dist

    from genlab.curvature.lanczos import lanczos
    from genlab.curvature.operators import EmpiricalFisherOperator, flat_per_sample_grads

    rank, size = dist.get_rank(group), dist.get_world_size(group)
    points = shard_indices(objective.n, rank, size) if shard else None
    F = ShardedOperator(EmpiricalFisherOperator(objective, indices=points), group=group)
    sums = torch.zeros(F.dim + 1, dtype=torch.float64, device=F.device)  # sum of g_i, then of ||g_i||^2
    for xb, yb in objective.chunks(points):  # streamed: never all n x d gradients at once
        g = flat_per_sample_grads(objective, xb, yb).double()
        sums[:-1] += g.sum(dim=0)
        sums[-1] += g.pow(2).sum()
    dist.all_reduce(sums, group=group)
    mean, second = (sums[:-1] / F.n).to(F.dtype), float(sums[-1]) / F.n
    C = CenteredOperator(F, mean)
    top = lanczos(C, min(top_k, C.dim), tol=tol, generator=torch.Generator().manual_seed(seed))
    return {"trace": second - float(mean.double().pow(2).sum()), "eigenvalues": [float(x) for x in top.eigenvalues],
            "n": F.n, "mean_gradient_norm": float(mean.norm())}
