"""Training in a random linear subspace: ``theta = theta0 + P w``, ``w`` in ``R^d`` (Li et al. 2018; Lotfi et al. 2022).

``P`` is never stored on disk: it is a pure function of ``(kind, D, d, seed)``, generated on the CPU with a seeded
``torch.Generator`` (so a certificate names it in three numbers and any machine rebuilds the same matrix), and held
in memory only in the compact form its kind needs:

- ``dense``: Gaussian entries ``N(0, 1/D)`` (columns of unit norm in expectation), ``D x d`` floats in memory;
- ``sparse``: ``s`` non-zeros per row at random columns, values ``+-sqrt(d / (D s))`` (unit column norm in
  expectation), ``D x s`` indices and signs: cost ``O(D s)`` per product;
- ``kron``: the anchor's "rdkron": ``P w = vec(A W B^T)`` truncated to ``D`` entries, ``W`` the ``d1 x d2`` matrix
  holding ``w`` (``d1 = ceil(sqrt(d))``), ``A`` (``D1 x d1``, entries ``N(0, 1/D1)``) and ``B`` (``D2 x d2``,
  ``N(0, 1/D2)``), ``D1 D2 >= D``: ``O(D (d1 + d2))`` per product with two tiny matrices.

Unit-norm columns make ``P P^T`` roughly a projection, so a learning rate means about the same in ``w`` as in
``theta``. The subspace may cover only some parameter groups (``groups``: name prefixes); the others stay at
``theta0``.

:class:`SubspaceModel` wraps any model as an ``nn.Module`` whose only parameter is ``w``, so the ordinary
training loop, checkpoints and :class:`~genlab.objective.Objective` work unchanged. The base model's buffers
(BatchNorm running statistics) are the wrapper's own buffers, updated by the forward pass in training mode as
usual: they are part of the predictor, so a certificate codes them in its message
(:mod:`~genlab.bounds.compression.buffers`), never recomputes them from data.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.func import functional_call

from genlab.bounds.compression.quantize import Quantizer, init_codebook
from genlab.errors import ConfigError
from genlab.train.callbacks import Callback, TrainState
from genlab.train.checkpoint import load_state_dict
from genlab.train.plugins import BuildContext, register_model_transform, register_plugin_factory
from genlab.train.run_dir import RunDir

PROJECTIONS = ("dense", "sparse", "kron")
SCALES = ("none", "fan-in")
DENSE_MAX_ENTRIES = 2 ** 27   # 512 MiB of float32; beyond it use sparse or kron
SPARSE_NONZEROS = 8           # non-zeros per row of the sparse projection (a declared constant, not a search)


@dataclass(frozen=True)
class ProjectionSpec:
    """What defines ``P``: its kind, shape ``D x d``, seed, and the parameter groups it covers (``()``: all)."""

    kind: str
    d: int
    seed: int
    groups: tuple[str, ...] = ()
    scale: str = "none"

    def __post_init__(self):
        if self.kind not in PROJECTIONS:
            raise ConfigError(f"projection: unknown kind {self.kind!r}; allowed: {', '.join(PROJECTIONS)}")
        if self.scale not in SCALES:
            raise ConfigError(f"projection scale: unknown {self.scale!r}; allowed: {', '.join(SCALES)}")
        if not isinstance(self.d, int) or self.d < 1:
            raise ConfigError(f"intrinsic_dim must be an integer >= 1, got {self.d!r}")

    def to_json(self) -> dict:
        return {**asdict(self), "groups": list(self.groups)}


class Projection(nn.Module):
    """``P``: ``R^d -> R^D``, rebuilt from its :class:`ProjectionSpec`; ``forward(w)`` returns ``P w``."""

    def __init__(self, kind: str, big_d: int, d: int, seed: int):
        super().__init__()
        self.kind, self.big_d, self.d, self.seed = kind, big_d, d, seed
        g = torch.Generator().manual_seed(seed)
        if kind == "dense":
            if big_d * d > DENSE_MAX_ENTRIES:
                raise ConfigError(f"a dense projection of {big_d:,} x {d:,} entries does not fit in memory "
                                  f"(limit {DENSE_MAX_ENTRIES:,}); use projection sparse or kron")
            self.register_buffer("matrix", torch.randn(big_d, d, generator=g) / math.sqrt(big_d), persistent=False)
        elif kind == "sparse":
            s = min(SPARSE_NONZEROS, d)
            cols = torch.randint(0, d, (big_d, s), generator=g)
            signs = torch.randint(0, 2, (big_d, s), generator=g).float().mul_(2).sub_(1)
            self.register_buffer("cols", cols, persistent=False)
            self.register_buffer("values", signs * math.sqrt(d / (big_d * s)), persistent=False)
        elif kind == "kron":
            d1 = math.ceil(math.sqrt(d))
            d2 = math.ceil(d / d1)
            big_d1 = math.ceil(math.sqrt(big_d))
            big_d2 = math.ceil(big_d / big_d1)
            self.d1, self.d2 = d1, d2
            self.register_buffer("left", torch.randn(big_d1, d1, generator=g) / math.sqrt(big_d1), persistent=False)
            self.register_buffer("right", torch.randn(big_d2, d2, generator=g) / math.sqrt(big_d2), persistent=False)
        else:
            raise ConfigError(f"projection: unknown kind {kind!r}; allowed: {', '.join(PROJECTIONS)}")

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.kind == "dense":
            return self.matrix.to(w.dtype) @ w
        if self.kind == "sparse":
            forward, transpose = self._csr(w)
            return _SparseMatVec.apply(w, forward, transpose)
        padded = torch.cat([w, w.new_zeros(self.d1 * self.d2 - self.d)]).view(self.d1, self.d2)
        return (self.left.to(w.dtype) @ padded @ self.right.to(w.dtype).T).reshape(-1)[: self.big_d]


    def _csr(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``P`` and ``P^T`` as CSR matrices on ``w``'s device and dtype (built once, cached, not in state)."""
        key = (w.device, w.dtype)
        cache = self.__dict__.setdefault("_csr_cache", {})
        if key not in cache:
            big_d, s = self.cols.shape
            cols = self.cols.reshape(-1)
            rows = torch.arange(big_d, device=cols.device).repeat_interleave(s)
            values = self.values.reshape(-1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)   # "sparse CSR support is in beta"
                forward = torch.sparse_csr_tensor(torch.arange(0, big_d * s + 1, s, device=cols.device), cols, values,
                                                  size=(big_d, self.d), check_invariants=False)
                transpose = torch.sparse_coo_tensor(torch.stack([cols, rows]), values, size=(self.d, big_d))
                transpose = transpose.coalesce().to_sparse_csr()
            cache.clear()
            cache[key] = (forward.to(device=w.device, dtype=w.dtype), transpose.to(device=w.device, dtype=w.dtype))
        return cache[key]


class _SparseMatVec(torch.autograd.Function):
    """``P w`` with a CSR ``P``; the backward pass multiplies by a CSR ``P^T`` (25x faster than a gather on CPU)."""

    @staticmethod
    def forward(ctx, w, forward, transpose):
        ctx.transpose = transpose
        return (forward @ w.unsqueeze(1)).squeeze(1)

    @staticmethod
    def backward(ctx, grad):
        return (ctx.transpose @ grad.unsqueeze(1)).squeeze(1), None, None


def fan_in_scale(model: nn.Module, index: torch.Tensor | None) -> torch.Tensor:
    """Per-parameter row scale ``1/sqrt(fan_in)`` of each tensor's layer, normalised to mean square 1 on the
    covered entries (so a learning rate in ``w`` keeps its meaning).

    Why: a unit step in ``w`` then moves every layer's pre-activations by about the same amount, instead of
    moving the wide fully connected layers (fan-in 400) relatively 4x more than the first convolution (fan-in
    25), as an unscaled projection does. A pure function of the parameter shapes, so the certificate needs
    only the word ``fan-in``. A bias takes the fan-in of its layer's weight (the same name with ``weight``).
    """
    shapes = dict((name, p.shape) for name, p in model.named_parameters())

    def fan_in(name: str, shape: torch.Size) -> int:
        if len(shape) >= 2:
            return math.prod(shape[1:])
        if name.endswith("bias") and len(shapes.get(name[:-4] + "weight", ())) >= 2:
            return math.prod(shapes[name[:-4] + "weight"][1:])
        return max(1, shape.numel() if len(shape) else 1)

    scale = torch.cat([torch.full((p.numel(),), fan_in(name, p.shape) ** -0.5) for name, p in model.named_parameters()])
    if index is not None:
        scale = scale[index]
    return scale / scale.square().mean().sqrt()


def covered_indices(model: nn.Module, groups: tuple[str, ...]) -> tuple[torch.Tensor | None, int]:
    """Positions in the flat parameter vector that the subspace moves (``None``: all), and their count."""
    total = sum(p.numel() for p in model.parameters())
    if not groups:
        return None, total
    names = [name for name, _ in model.named_parameters()]
    unknown = [g for g in groups if not any(n.startswith(g) for n in names)]
    if unknown:
        raise ConfigError(f"projection groups {unknown} match no parameter of the model; parameter names: "
                          f"{', '.join(names)}")
    chunks, offset = [], 0
    for name, p in model.named_parameters():
        if any(name.startswith(g) for g in groups):
            chunks.append(torch.arange(offset, offset + p.numel()))
        offset += p.numel()
    index = torch.cat(chunks)
    return index, len(index)


class SubspaceModel(nn.Module):
    """``base`` with parameters ``theta0 + P w``; the only trainable parameter is ``w`` (zeros at start).

    ``theta0`` is a buffer (the base model's parameters at wrap time: a random initialisation from the seed, or a
    prior centre trained on a declared split). ``quantizer`` (optional, see
    :class:`~genlab.bounds.compression.quantize.Quantizer`) maps ``w`` to its codebook values in the forward pass.
    """

    def __init__(self, base: nn.Module, spec: ProjectionSpec):
        super().__init__()
        object.__setattr__(self, "base", base)   # not a submodule: its parameters are not ours to train
        self.spec = spec
        self.shapes = [(name, p.shape, p.numel()) for name, p in base.named_parameters()]
        theta0 = torch.cat([p.detach().reshape(-1) for p in base.parameters()])
        self.register_buffer("theta0", theta0.clone())
        index, covered = covered_indices(base, spec.groups)
        self.covered = covered
        if index is not None:
            self.register_buffer("index", index, persistent=False)
        else:
            self.index = None
        self.projection = Projection(spec.kind, covered, spec.d, spec.seed)
        if spec.scale == "fan-in":
            self.register_buffer("row_scale", fan_in_scale(base, index).to(theta0.dtype), persistent=False)
        else:
            self.row_scale = None
        self.w = nn.Parameter(torch.zeros(spec.d, dtype=theta0.dtype))
        # the base's buffers, as ours (checkpointed, moved by .to()); positional names: a buffer's own name has dots
        self.buffer_names = [name for name, _ in base.named_buffers()]
        self.base_buffers = nn.Module()
        for i, (_, b) in enumerate(base.named_buffers()):
            self.base_buffers.register_buffer(f"b{i}", b.detach().clone())
        self.quantizer: nn.Module | None = None
        self.noise = 0.0
        # fixed statistics (a prior centre's): the modules holding buffers normalise with them even in training
        self.frozen_buffers = False
        self._buffer_modules = [m for m in base.modules()
                                if m is not base and any(True for _ in m.buffers(recurse=False))]

    def effective_w(self) -> torch.Tensor:
        """The ``w`` the forward pass uses: quantized (straight-through) when a quantizer is attached; in
        training mode without one, ``w`` plus Gaussian noise of std ``noise`` (robustness to later quantization)."""
        if self.quantizer is not None:
            return self.quantizer(self.w)
        if self.training and self.noise > 0:
            return self.w + self.noise * torch.randn_like(self.w)
        return self.w

    def theta(self, w: torch.Tensor | None = None) -> torch.Tensor:
        """The flat parameter vector ``theta0 + P w`` (``w`` defaults to :meth:`effective_w`)."""
        w = self.effective_w() if w is None else w
        delta = self.projection(w)
        if self.row_scale is not None:
            delta = delta * self.row_scale
        if self.index is None:
            return self.theta0 + delta
        return self.theta0.index_add(0, self.index, delta)

    def base_params(self, w: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The base model's parameters as a name -> tensor dict (views of :meth:`theta`)."""
        return self.unflatten(self.theta(w))

    def buffers_of_base(self) -> dict[str, torch.Tensor]:
        """The base model's buffers under their own names (the tensors themselves: training updates them)."""
        return {name: getattr(self.base_buffers, f"b{i}") for i, name in enumerate(self.buffer_names)}

    def set_buffers(self, values: dict[str, torch.Tensor]) -> None:
        """Copy ``values`` (name -> tensor, every buffer of the base) into the buffers."""
        if sorted(values) != sorted(self.buffer_names):
            raise ConfigError(f"buffers {sorted(values)} are not the model's {sorted(self.buffer_names)}")
        own = self.buffers_of_base()
        with torch.no_grad():
            for name, value in values.items():
                own[name].copy_(value)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat vector of the base model's size as a name -> tensor dict of views (e.g. of ``theta0``)."""
        out, offset = {}, 0
        for name, shape, numel in self.shapes:
            out[name] = flat[offset: offset + numel].view(shape)
            offset += numel
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.base
        if base.training != self.training:
            base.train(self.training)
        if self.frozen_buffers and self.training:
            for module in self._buffer_modules:
                module.eval()
        return functional_call(base, {**self.base_params(), **self.buffers_of_base()}, (x,))

    def extra_repr(self) -> str:
        return f"kind={self.spec.kind}, d={self.spec.d}, D={self.covered:,}, seed={self.spec.seed}"


def subspace_model(config, base: nn.Module) -> SubspaceModel:
    """The :class:`SubspaceModel` a :class:`~genlab.config.TrainConfig` with ``intrinsic_dim`` describes.

    With ``quant_levels`` a :class:`~genlab.bounds.compression.quantize.Quantizer` is attached; its codebook is a
    placeholder until :func:`initialise_from_runs` fits it (or a checkpoint restores it).
    """
    sub, quant = config.plugins.subspace, config.plugins.quantization
    seed = config.run.seed if sub.projection_seed is None else sub.projection_seed
    model = SubspaceModel(base, ProjectionSpec(sub.projection, sub.intrinsic_dim, seed, tuple(sub.projection_groups),
                                               sub.projection_scale))
    if quant.quant_levels is not None:
        model.quantizer = Quantizer(torch.linspace(-1, 1, quant.quant_levels), d=sub.intrinsic_dim,
                                    rate=quant.quant_rate)
        if quant.quant_stages > 1:
            model.quantizer.mask.zero_()   # ProgressiveQuantization fills it stage by stage
    model.noise = sub.subspace_noise
    if sub.subspace_buffers == "prior":
        if sub.subspace_prior is None:
            raise ConfigError("subspace_buffers prior keeps the prior centre's BatchNorm statistics: it needs "
                              "subspace_prior (genlab bound: --prior-split)")
        model.frozen_buffers = True
    return model


def _final_weights(path: str, what: str) -> dict[str, torch.Tensor]:
    rd = RunDir(path)
    if not rd.model.is_file():
        raise ConfigError(f"{what} {path}: no finished run there (no {rd.model.name}); train it first")
    return load_state_dict(rd.model)


def initialise_from_runs(config, model: nn.Module) -> None:
    """At the start of a fresh run: ``theta0`` from ``subspace_prior``, weights from ``init_from``, codebook from w.

    Raises:
        ConfigError: a named run is missing or its weights do not fit this model.
    """
    prior, init_from = config.plugins.subspace.subspace_prior, config.plugins.init.init_from
    if prior is not None:
        state = _final_weights(prior, "subspace_prior")
        base = model.base
        names = [name for name, _ in base.named_parameters()]
        fits = sorted(state) == sorted(names + model.buffer_names) and all(
            state[n].shape == p.shape for n, p in base.named_parameters())
        if not fits:
            raise ConfigError(f"subspace_prior {prior}: its weights do not fit {config.model.name} "
                              f"(it must be a plain run of the same model and shape)")
        flat = torch.cat([state[n].reshape(-1) for n in names]).to(model.theta0)
        model.theta0.copy_(flat)
        if model.buffer_names:   # a starting point only: the certified buffers are those the message codes
            model.set_buffers({n: state[n] for n in model.buffer_names})
    if init_from is not None:
        state = _final_weights(init_from, "init_from")
        own = model.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if "w" in own and "w" not in usable:
            raise ConfigError(f"init_from {init_from}: no subspace coordinates w of dimension "
                              f"{own['w'].numel()} there (is it a run with the same intrinsic_dim?)")
        if not usable:
            raise ConfigError(f"init_from {init_from}: its weights do not fit this model")
        if "theta0" in usable and prior is None and not torch.equal(usable["theta0"].to(own["theta0"]), own["theta0"]):
            raise ConfigError(f"init_from {init_from}: it was trained from another theta0 (seed or "
                              f"subspace_prior differ)")
        tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        with torch.no_grad():
            for k, v in usable.items():
                if k != "quantizer.codebook":   # refitted to w below
                    tensors[k].copy_(v)
    if getattr(model, "quantizer", None) is not None:
        with torch.no_grad():
            model.quantizer.codebook.copy_(init_codebook(model.w, model.quantizer.levels,
                                                         config.plugins.quantization.quant_init))


class InitFromRuns(Callback):
    """Training plugin: at the start of a fresh run, ``theta0`` from ``subspace_prior`` and the weights from
    ``init_from`` (:func:`initialise_from_runs`)."""

    state_key = "init_from_runs"

    def __init__(self, config):
        self.config = config

    def settings(self) -> dict:
        return {"init_from": self.config.plugins.init.init_from,
                "subspace_prior": self.config.plugins.subspace.subspace_prior}

    def on_init(self, state: TrainState) -> None:
        initialise_from_runs(self.config, state.model)


def _init_plugins(ctx: BuildContext) -> list[Callback]:
    c = ctx.config
    used = c.plugins.init.init_from is not None or c.plugins.subspace.subspace_prior is not None
    return [InitFromRuns(c)] if used else []


def _subspace_transform(config, model: nn.Module) -> nn.Module:
    return subspace_model(config, model) if config.plugins.subspace.intrinsic_dim is not None else model


register_plugin_factory("init-from-runs", _init_plugins, order=0)
register_model_transform("subspace", _subspace_transform)
