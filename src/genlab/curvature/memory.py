"""How much memory a curvature computation may take, and how it is spent: ``genlab curvature --max-memory``.

A full-dataset curvature computation holds three things besides the data and the model:

* **one batch's graph** while a product streams over the batches (freed before the next batch): its size is
  *measured*, as the bytes of the tensors autograd saves while building one chunk's double-backward graph;
* **the cached graphs** (optional: every chunk's first-order graph kept between products, one backward per
  product instead of a forward and two backwards): ``chunks x`` one chunk's graph, so it grows with ``n``;
* **the solver's vectors** (``d`` numbers each): the Lanczos basis (one vector per product unless capped, see
  :func:`genlab.curvature.lanczos.lanczos`'s ``max_basis``), Hutch++'s sketches (about ``4 m`` vectors for
  ``3 m`` products), SLQ's basis (``steps`` vectors), and a few working vectors.

The rule :func:`plan_memory` applies to a budget ``B``:

1. fixed: one batch's graph plus :data:`WORK_VECTORS` working vectors; the trace and density sketches when
   asked for (they are not capped: a budget too small for them is refused, naming the flag to lower);
2. the graphs are cached only when all of them fit in half of what is left;
3. the Lanczos basis gets the rest, ``floor(rest / vector)`` vectors (at least ``top_k + 2``), as
   ``max_basis``: a basis that reaches it restarts thick instead of growing.

So memory is flat in the dataset size whenever the graphs are not cached: one batch's graph and the basis.
Without a budget nothing is capped (graphs cached when ``n x d`` is below
:data:`genlab.curvature.operators.CACHE_GRAPH_LIMIT`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch

from genlab.errors import ConfigError

WORK_VECTORS = 8  # products, residuals and Ritz vectors alive beside the basis
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}


def parse_size(text: str | int) -> int:
    """Bytes from ``"2GB"``, ``"500MiB"``, ``"1.5g"`` or a plain number of bytes."""
    if isinstance(text, int):
        size = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ConfigError(f"--max-memory: cannot read {text!r} as a size; give a number of bytes or one with "
                              f"a unit, e.g. 800MB, 2GB, 1.5GiB")
        size = float(m.group(1)) * _UNITS[unit]
    if not size >= 1:
        raise ConfigError(f"--max-memory: must be a positive size (got {text!r})")
    return int(size)


def _mb(b: float) -> str:
    return f"{b / 1e6:.1f} MB"


@dataclass
class MemoryPlan:
    """What a budget allows (see the module docstring); ``as_dict`` is what ``curvature.json`` records."""

    max_memory: int | None
    vector_bytes: int
    graph_bytes_per_chunk: int | None
    chunks: int
    cache_graph: bool | None  # None: the operator's own default (no budget)
    basis_columns: int | None  # the Lanczos max_basis; None: uncapped
    sketch_bytes: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def graph_bytes(objective, params=None) -> int:
    """Bytes autograd saves for one chunk's double-backward graph (the first chunk of ``objective``).

    Counted through :func:`torch.autograd.graph.saved_tensors_hooks`, each storage once, so it is what stays
    alive while one batch streams (parameters and inputs included when autograd saves them).
    """
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        try:
            st = t.untyped_storage()
            seen.setdefault(st.data_ptr(), st.nbytes())
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. some wrappers)
            seen.setdefault(id(t), t.numel() * t.element_size())
        return t

    src = objective.params() if params is None else params
    wrt = {k: p.detach().clone().requires_grad_(True) for k, p in src.items()}
    xb, yb = next(iter(objective.chunks()))
    with objective.eval_mode(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, grads = objective.batch_hvp_graph(xb, yb, wrt)
        # the product's own backward saves nothing new; the graph above is what a chunk keeps
    del loss, grads
    return int(sum(seen.values()))


def plan_memory(objective, budget: int | None, *, top_k: int, trace_matvecs: int | None = None,
                density_steps: int | None = None, params=None, n: int | None = None) -> MemoryPlan:
    """Split ``budget`` bytes between one batch's graph, cached graphs, sketches and the Lanczos basis.

    Raises :class:`~genlab.errors.ConfigError` (one line, naming what to change) when the budget cannot hold
    one batch's graph, the sketches asked for, and a basis of ``top_k + 2`` vectors. ``n``: the points this
    process sums over (its shard; default all of ``objective``'s).
    """
    d = objective.num_params()
    itemsize = torch.empty((), dtype=objective.dtype).element_size()
    vec = d * itemsize
    n = objective.n if n is None else int(n)
    chunks = -(-n // objective.batch_size) if objective.in_memory else n  # a loader's batches: at most n
    if budget is None:
        return MemoryPlan(None, vec, None, chunks, None, None)
    per_chunk = graph_bytes(objective, params)
    sketch = 0
    if trace_matvecs:
        sketch = max(sketch, 4 * min(trace_matvecs // 3, d) * vec)
    if density_steps:
        sketch = max(sketch, min(density_steps, d) * vec)
    fixed = per_chunk + WORK_VECTORS * vec
    least = fixed + sketch + (top_k + 2) * vec
    if budget < least:
        parts = [f"one batch's graph {_mb(per_chunk)} (--batch-size)", f"{top_k + 2} basis vectors of "
                 f"{_mb(vec)} (--top-k {top_k})"]
        if trace_matvecs:
            parts.append(f"the trace's sketches (--trace-matvecs {trace_matvecs})")
        if density_steps:
            parts.append(f"the density's basis (--density-steps {density_steps})")
        raise ConfigError(f"--max-memory {_mb(budget)}: too small; it must hold {', '.join(parts)}: "
                          f"{_mb(least)} in all; raise it or lower those")
    rest = budget - fixed - sketch
    cached = chunks * per_chunk if objective.in_memory else None
    cache = cached is not None and cached <= rest / 2
    if cache:
        rest -= cached
    basis = max(int(rest // vec), top_k + 2)
    return MemoryPlan(budget, vec, per_chunk, chunks, cache, min(basis, d), sketch)
