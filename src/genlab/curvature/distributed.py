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

    H = ShardedOperator(HessianOperator(Objective(model, loss, my_shard_loader)))
    top = lanczos(H, k=5, generator=torch.Generator().manual_seed(0))   # the same on every rank

``genlab curvature RUN --nproc N`` starts ``N`` local processes itself (:func:`spawn`), each on the contiguous
shard :func:`shard_indices` gives it.
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
