"""Model registry: :data:`MODELS`, :func:`build_model`, :func:`list_models`, :func:`count_parameters`."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.registry import Registry
from genlab.models.cnn import SmallCNN
from genlab.models.layers import ACTIVATIONS
from genlab.models.lenet import LeNet5
from genlab.models.linear import DiagonalLinear, LinearModel
from genlab.models.mlp import MLP
from genlab.models.resnet import ResNet
from genlab.models.vit import VisionTransformer
from genlab.models.zhu_cnn import ZhuCNN

_ALL_ACTIVATIONS = tuple(ACTIVATIONS)


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """Description of one model family in :data:`MODELS`.

    Attributes:
        name: registry name passed to :func:`build_model`.
        description: one-line summary (shown by ``genlab models``).
        reference: the paper the architecture follows.
        builder: ``builder(input_shape, output_dim, width=, depth=, dropout=,
            activation=, batchnorm=, **options) -> nn.Module`` with resolved values.
        default_width / default_depth: used when ``None`` is passed; ``None`` here
            means the setting does not apply to the family (passing one is an error).
        width_help / depth_help: what width and depth mean for this family.
        default_activation: used when ``activation=None``.
        activations: accepted activation names.
        options: family-specific keyword options, name -> help text (with default).
        input_ranks: accepted ranks of the per-example input shape.
        uses_batchnorm: whether ``batchnorm`` changes the model (others ignore it:
            they contain no BatchNorm either way).
    """

    name: str
    description: str
    reference: str
    builder: Callable[..., nn.Module] = field(repr=False)
    default_width: int | None
    default_depth: int | None
    width_help: str
    depth_help: str
    default_activation: str
    activations: tuple[str, ...]
    options: dict[str, str]
    input_ranks: tuple[int, ...] = (1, 2, 3)
    uses_batchnorm: bool = False
    any_options: bool = False  # a user factory: every model option is passed through to it


def _build_mlp(input_shape, output_dim, *, width, depth, dropout, activation, batchnorm):
    return MLP(input_shape, output_dim, width=width, depth=depth, dropout=dropout, activation=activation)


def _build_lenet5(input_shape, output_dim, *, width, depth, dropout, activation, batchnorm, pooling="max"):
    return LeNet5(input_shape, output_dim, width=width, dropout=dropout, activation=activation, pooling=pooling)


def _build_zhu_cnn(input_shape, output_dim, *, width, depth, dropout, activation, batchnorm):
    return ZhuCNN(input_shape, output_dim, width=width, dropout=dropout, activation=activation)


def _build_linear(input_shape, output_dim, *, width, depth, dropout, activation, batchnorm):
    return LinearModel(input_shape, output_dim, dropout=dropout)


def _build_diagonal_linear(input_shape, output_dim, *, width, depth, dropout, activation, batchnorm,
                           init_scale=0.1):
    return DiagonalLinear(input_shape, output_dim, init_scale=init_scale, dropout=dropout)


def _build_cnn(input_shape, output_dim, *, width, depth, dropout, activation, batchnorm):
    return SmallCNN(input_shape, output_dim, width=width, depth=depth, dropout=dropout, activation=activation)


def _build_resnet(input_shape, output_dim, *, width, depth, dropout, activation, batchnorm):
    return ResNet(
        input_shape, output_dim, width=width, depth=depth, dropout=dropout, activation=activation, batchnorm=batchnorm
    )


def _build_vit(
    input_shape, output_dim, *, width, depth, dropout, activation, batchnorm, patch_size=None, heads=4, mlp_ratio=2.0
):
    return VisionTransformer(
        input_shape,
        output_dim,
        width=width,
        depth=depth,
        dropout=dropout,
        activation=activation,
        patch_size=patch_size,
        heads=heads,
        mlp_ratio=mlp_ratio,
    )


#: Registered model families by name.
MODELS: dict[str, ModelSpec] = Registry({
    spec.name: spec
    for spec in (
        ModelSpec(
            name="mlp",
            description="fully connected net: flatten, depth hidden layers of width units, linear head",
            reference="e.g. Cohen et al. 2021 (edge of stability: width 200, depth 2, tanh)",
            builder=_build_mlp,
            default_width=100,
            default_depth=2,
            width_help="units per hidden layer",
            depth_help="number of hidden layers",
            default_activation="relu",
            activations=_ALL_ACTIVATIONS,
            options={},
        ),
        ModelSpec(
            name="lenet5",
            description="LeNet-5: conv5-pool-conv5-pool, fc 120, fc 84, head (inputs >= 12 per side)",
            reference="LeCun et al. 1998",
            builder=_build_lenet5,
            default_width=6,
            default_depth=None,
            width_help="channels of the first conv; the second has round(16*width/6)",
            depth_help="fixed (2 conv + 3 fc layers); does not apply",
            default_activation="relu",
            activations=_ALL_ACTIVATIONS,
            options={"pooling": "'max' (default) or 'avg' (the original subsampling)"},
        ),
        ModelSpec(
            name="cnn",
            description="strided CNN of the MNIST-1D paper: depth convs (k5 then k3, stride 2), linear head",
            reference="Greydanus & Kobak 2024 (MNIST-1D)",
            builder=_build_cnn,
            default_width=25,
            default_depth=3,
            width_help="channels of every conv layer",
            depth_help="number of conv layers",
            default_activation="relu",
            activations=_ALL_ACTIVATIONS,
            options={},
        ),
        ModelSpec(
            name="zhu-cnn",
            description="Zhu et al.'s SGLD-noise CNN: conv5-pool-conv5-pool, fc 50, head (11,330 params on 28x28)",
            reference="Zhu et al. 2019; Wang et al. 2021",
            builder=_build_zhu_cnn,
            default_width=10,
            default_depth=None,
            width_help="channels of both convs",
            depth_help="fixed (2 conv + 2 fc layers); does not apply",
            default_activation="relu",
            activations=_ALL_ACTIVATIONS,
            options={},
        ),
        ModelSpec(
            name="linear",
            description="linear predictor: flatten, one Linear layer (least squares / softmax regression)",
            reference="closed-form checks (Wang et al. 2021's linear and logistic models)",
            builder=_build_linear,
            default_width=None,
            default_depth=None,
            width_help="does not apply",
            depth_help="does not apply",
            default_activation="relu",
            activations=_ALL_ACTIVATIONS,
            options={},
        ),
        ModelSpec(
            name="diagonal-linear",
            description="diagonal linear network f(x) = <u*v, x> (a known zero-loss manifold when n < d)",
            reference="Woodworth et al. 2020; Shalova et al. 2024",
            builder=_build_diagonal_linear,
            default_width=None,
            default_depth=None,
            width_help="does not apply",
            depth_help="does not apply",
            default_activation="relu",
            activations=_ALL_ACTIVATIONS,
            options={"init_scale": "u = v = init_scale at initialisation (default 0.1)"},
        ),
        ModelSpec(
            name="resnet",
            description="CIFAR ResNet of depth 6n+2, stages of width/2w/4w channels, projection shortcuts",
            reference="He et al. 2016",
            builder=_build_resnet,
            default_width=16,
            default_depth=20,
            width_help="channels of the first stage (then 2x, 4x)",
            depth_help="total layers, 6n+2 (8, 14, 20, 32, 44, 56, 110, ...)",
            default_activation="relu",
            activations=_ALL_ACTIVATIONS,
            options={},
            uses_batchnorm=True,
        ),
        ModelSpec(
            name="vit",
            description="tiny Vision Transformer: patch embedding, class token, pre-LN blocks, hand-written attention",
            reference="Dosovitskiy et al. 2021",
            builder=_build_vit,
            default_width=64,
            default_depth=4,
            width_help="embedding dimension",
            depth_help="number of transformer blocks",
            default_activation="gelu",
            activations=("gelu", "relu"),
            options={
                "patch_size": "patch side; default 4 (2 for images under 16 px); must divide the input",
                "heads": "attention heads (default 4); must divide width",
                "mlp_ratio": "MLP hidden size / width (default 2)",
            },
        ),
    )
})


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_positive_int(what: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{what} must be an integer >= 1; got {value!r}")
    return int(value)


def _check_options(spec: ModelSpec, options: dict[str, Any]) -> dict[str, Any]:
    if spec.any_options:
        return dict(options)
    for key in options:
        if key not in spec.options:
            allowed = ", ".join(spec.options) if spec.options else "none"
            raise ConfigError(f"unknown option {key!r} for model {spec.name}; allowed options: {allowed}")
    out = dict(options)
    if spec.name == "lenet5" and "pooling" in out and out["pooling"] not in ("max", "avg"):
        raise ConfigError(f"lenet5 pooling must be one of: max, avg; got {out['pooling']!r}")
    if spec.name == "diagonal-linear" and out.get("init_scale") is None:
        out.pop("init_scale", None)
    if spec.name == "diagonal-linear" and "init_scale" in out:
        scale = out["init_scale"]
        if not _is_real(scale) or not math.isfinite(scale):
            raise ConfigError(f"diagonal-linear init_scale must be a finite number; got {scale!r}")
        out["init_scale"] = float(scale)
    if spec.name == "vit":
        for key in ("patch_size", "heads"):
            if key in out and not (key == "patch_size" and out[key] is None):
                out[key] = _check_positive_int(f"vit {key}", out[key])
        if "mlp_ratio" in out:
            ratio = out["mlp_ratio"]
            if not _is_real(ratio) or not math.isfinite(ratio) or ratio <= 0:
                raise ConfigError(f"vit mlp_ratio must be a number > 0; got {ratio!r}")
            out["mlp_ratio"] = float(ratio)
    return out


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    output_dim: int,
    *,
    width: int | None = None,
    depth: int | None = None,
    dropout: float = 0.0,
    activation: str | None = None,
    batchnorm: bool = True,
    **options: Any,
) -> nn.Module:
    """Build a reference model from :data:`MODELS` by name.

    Args:
        name: one of ``mlp``, ``lenet5``, ``cnn``, ``resnet``, ``vit``.
        input_shape: shape of ONE example: ``(L,)`` for a 1-channel signal
            (e.g. MNIST-1D ``(40,)``), ``(C, L)`` for a multichannel signal,
            ``(C, H, W)`` for an image. Conv models use Conv1d for rank 1/2 and
            Conv2d for rank 3.
        output_dim: number of outputs (classes).
        width, depth: ``None`` gives the family default (see ``MODELS[name]``);
            their meaning per family is in ``ModelSpec.width_help/depth_help``.
            ``lenet5`` has no ``depth``.
        dropout: probability in ``[0, 1)``; 0 adds no Dropout modules.
        activation: ``None`` gives the family default; else one of
            ``MODELS[name].activations``.
        batchnorm: for ``resnet``, ``False`` replaces every BatchNorm with the
            identity; the other families contain no BatchNorm and ignore it.
        **options: family-specific options, ``MODELS[name].options``
            (``lenet5``: ``pooling``; ``vit``: ``patch_size``, ``heads``, ``mlp_ratio``).

    Returns:
        An ``nn.Module`` mapping ``(B, *input_shape)`` to ``(B, output_dim)``, in
        train mode, with PyTorch's default initialisation (seed ``torch`` first for
        reproducibility; nothing else draws random numbers). Its ``config``
        attribute holds the resolved arguments, so ``build_model(**model.config)``
        rebuilds the same architecture.

    Raises:
        ConfigError: unknown name/option/activation, or a bad value for this family.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    spec = MODELS[name]
    clash = sorted(set(options) & {"width", "depth", "dropout", "activation", "batchnorm"})
    if clash:
        raise ConfigError(f"model option {clash[0]!r} is a setting of its own (--{clash[0]}), not a model option")

    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__iter__"):
        raise ConfigError(f"input_shape must be a tuple of positive integers; got {input_shape!r}")
    shape = tuple(input_shape)
    if not shape or not all(_is_int(s) and s >= 1 for s in shape):
        raise ConfigError(f"input_shape must be a non-empty tuple of positive integers; got {input_shape!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) not in spec.input_ranks:
        ranks = ", ".join(map(str, spec.input_ranks))
        raise ConfigError(f"{name} takes inputs of rank {ranks} (per example); got shape {shape}")
    output_dim = _check_positive_int("output_dim", output_dim)

    if spec.any_options:  # a user factory: the shape settings that were given are its keyword options
        given = {k: v for k, v in (("width", width), ("depth", depth), ("activation", activation)) if v is not None}
        if dropout:
            given["dropout"] = dropout
        try:
            model = spec.builder(shape, output_dim, **{**options, **given})
        except TypeError as err:
            raise ConfigError(f"model {name}: its factory does not take these settings ({err})") from None
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model {name}: its factory returned {type(model).__name__}, not an nn.Module")
        model.config = {"name": name, "input_shape": shape, "output_dim": output_dim, **options, **given}
        return model

    resolved: dict[str, Any] = {}
    for key, value, default in (("width", width, spec.default_width), ("depth", depth, spec.default_depth)):
        if default is None:
            if value is not None:
                help_text = spec.depth_help if key == "depth" else spec.width_help
                raise ConfigError(f"{key} does not apply to {name} ({help_text}); leave it unset, got {value!r}")
            resolved[key] = None
        else:
            resolved[key] = default if value is None else _check_positive_int(f"{name} {key}", value)

    if not _is_real(dropout) or not (0.0 <= dropout < 1.0):
        raise ConfigError(f"dropout must be a number in [0, 1); got {dropout!r}")
    dropout = float(dropout)
    if activation is None:
        activation = spec.default_activation
    if activation not in spec.activations:
        allowed = ", ".join(spec.activations)
        raise ConfigError(f"activation {activation!r} is not available for {name}; allowed: {allowed}")
    if not isinstance(batchnorm, bool):
        raise ConfigError(f"batchnorm must be true or false; got {batchnorm!r}")
    opts = _check_options(spec, options)

    model = spec.builder(
        shape,
        output_dim,
        width=resolved["width"],
        depth=resolved["depth"],
        dropout=dropout,
        activation=activation,
        batchnorm=batchnorm,
        **opts,
    )
    # Options resolved by the model itself (e.g. the vit default patch size).
    if not spec.any_options:
        opts = {key: getattr(model, key, opts.get(key)) for key in spec.options}
    model.config = {
        "name": name,
        "input_shape": shape,
        "output_dim": output_dim,
        "width": resolved["width"],
        "depth": resolved["depth"],
        "dropout": dropout,
        "activation": activation,
        "batchnorm": batchnorm,
        **opts,
    }
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (buffers such as BatchNorm
    running statistics excluded); with ``trainable_only``, only those with
    ``requires_grad``. Shared parameters are counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def list_models(input_shape: tuple[int, ...] = (1, 28, 28), output_dim: int = 10) -> list[dict[str, Any]]:
    """Summaries of every family in :data:`MODELS`, for a ``genlab models`` command.

    Each entry has ``name``, ``description``, ``reference``, ``width``, ``depth``,
    ``activation`` (defaults), ``width_help``, ``depth_help``, ``activations``,
    ``options`` (name -> help), ``input_ranks``, and ``parameters``: the parameter
    count of the default model for ``input_shape``/``output_dim``, or ``None`` with
    the reason in ``note`` when the family cannot take that input (``note`` is
    ``None`` otherwise). The models are built under a forked RNG, so calling this
    does not change PyTorch's global random state.
    """
    rows = []
    for spec in MODELS.values():
        params: int | None = None
        note: str | None = None
        try:
            with torch.random.fork_rng(devices=[]):
                params = count_parameters(build_model(spec.name, input_shape, output_dim))
        except ConfigError as err:
            note = str(err)
        rows.append(
            {
                "name": spec.name,
                "description": spec.description,
                "reference": spec.reference,
                "width": spec.default_width,
                "depth": spec.default_depth,
                "activation": spec.default_activation,
                "width_help": spec.width_help,
                "depth_help": spec.depth_help,
                "activations": list(spec.activations),
                "options": dict(spec.options),
                "input_ranks": list(spec.input_ranks),
                "parameters": params,
                "note": note,
            }
        )
    return rows


def register_model(name: str, factory: Callable[..., nn.Module], *, description: str = "",
                   reference: str = "user model") -> ModelSpec:
    """Make ``factory(input_shape, output_dim, **model_options) -> nn.Module`` a named model.

    ``--width``, ``--depth``, ``--activation`` and ``--dropout``, when given, reach the factory as keyword
    arguments too.
    ``genlab train --import mymodule --model NAME --model-option k=v`` (and configs, sweeps, ``genlab bound``)
    then build it; run directories record the name, so reloading the run needs the same ``--import``
    (or an installed package whose ``genlab.extensions`` entry point registers it).
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"register_model: name must be a non-empty string (got {name!r})")
    if dict.__contains__(MODELS, name) and getattr(dict.__getitem__(MODELS, name), "builder", None) is not None \
            and not dict.__getitem__(MODELS, name).any_options:
        raise ConfigError(f"register_model: {name!r} is one of genlab's own models; choose another name")

    spec = ModelSpec(name=name, description=description or getattr(factory, "__doc__", "") or name,
                     reference=reference, builder=factory, default_width=None, default_depth=None,
                     width_help="set by the factory", depth_help="set by the factory", default_activation="any",
                     activations=("any",), options={}, input_ranks=tuple(range(1, 8)), any_options=True)
    dict.__setitem__(MODELS, name, spec)
    return spec
