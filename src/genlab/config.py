"""Settings of every command as pydantic models; config files and flags map onto them.

A config file (TOML or JSON) holds the same keys as the command's flags (with
underscores: ``batch_size``); flags given on the command line override the file.
Unknown keys and bad values are rejected with one line naming the key and what
is allowed (:func:`validate_config`).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from genlab.errors import ConfigError


class TrainConfig(BaseModel):
    """Everything that defines a training run (``genlab train``).

    Exactly one of ``epochs`` and ``steps`` sets the length (default: 10 epochs).
    For ``gd`` an epoch is one full-batch step; for ``sgd`` and ``adam`` it is
    ``ceil(n_train / batch_size)`` steps over a fresh permutation.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # data
    dataset: str = Field("mnist1d", description="dataset name (see genlab datasets)")
    n_train: int | None = Field(None, ge=1, description="keep the first n training points")
    label_noise: float = Field(0.0, ge=0.0, le=1.0, description="fraction of training labels corrupted")
    loss: Literal["ce", "mse"] | None = Field(None, description="ce or mse (one-hot); default: the dataset's")
    data_dir: str | None = Field(None, description="directory of dataset files (default $GENLAB_DATA, then "
                                                   "../shared/data, then the user cache)")
    dataset_options: dict[str, Any] = Field(default_factory=dict, description="dataset option KEY=VALUE",
                                            json_schema_extra={"flag": "--dataset-option"})
    # model
    model: str = Field("mlp", description="model name (see genlab models)")
    width: int | None = Field(None, ge=1, description="model width (the family's default)")
    depth: int | None = Field(None, ge=1, description="model depth (the family's default)")
    activation: str | None = Field(None, description="activation: relu, tanh, ... (the family's default)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout rate in [0, 1)")
    batchnorm: bool = Field(True, description="BatchNorm in resnet")
    model_options: dict[str, Any] = Field(default_factory=dict, description="model option KEY=VALUE",
                                          json_schema_extra={"flag": "--model-option"})
    # optimisation
    optimizer: str = Field("sgd", description="gd | sgd | adam | sgld | gld | ivon | vgd (and registered ones)")
    lr: float = Field(0.1, gt=0.0, description="learning rate")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="constant, or cosine decay from lr to 0 over the run's steps")
    momentum: float | None = Field(None, ge=0.0, lt=1.0, description="heavy-ball momentum (gd, sgd; default 0) "
                                                                     "or Adam's beta1 (default 0.9)")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 weight decay (gd, sgd, adam, ivon)")
    batch_size: int = Field(64, ge=1, description="mini-batch size (ignored by full-batch optimizers)")
    epochs: int | None = Field(None, ge=1, description="length in epochs (default 10)")
    steps: int | None = Field(None, ge=1, description="length in optimizer steps (instead of epochs)")
    seed: int = Field(0, ge=0, description="seed of init, batch order, label noise, dropout")
    # SGLD (optimizer sgld / gld; genlab.optim.SGLD)
    sgld_noise: Literal["isotropic", "diagonal", "gradcov", "sqrt-gradcov"] = Field(
        "isotropic", description="SGLD noise shape")
    noise_trace: float = Field(1e-4, gt=0.0, description="SGLD: total noise variance tr(Sigma) added per step")
    noise_floor: float = Field(1e-3, gt=0.0, le=1.0, description="SGLD: share of noise_trace spread isotropically")
    sgld_cov: Literal["batch", "heldout"] = Field(
        "heldout", description="SGLD: estimate C on held-out points (data-independent prior; a bound) or on the "
                               "step's batch (no bound)")
    sgld_completion: bool = Field(True, description="SGLD: complete the low-rank C with its estimated unseen "
                                                    "variance (genlab.optim.noise)")
    sgld_cov_size: int | None = Field(None, ge=2, description="SGLD: points C is estimated on (default batch_size)")
    sgld_bound: bool = Field(True, description="SGLD: account the information-theoretic bound (one held-out "
                                               "gradient per step)")
    # variational learning (optimizer ivon / vgd; genlab.optim.ivon)
    ess: float | None = Field(None, gt=0.0, description="IVON: effective sample size (default: the training-set size)")
    hess_init: float = Field(1.0, gt=0.0, description="IVON: initial Hessian estimate h0")
    ivon_beta1: float = Field(0.9, ge=0.0, lt=1.0, description="IVON: gradient momentum")
    ivon_beta2: float = Field(0.99999, ge=0.0, le=1.0, description="IVON: Hessian-estimate momentum")
    ivon_clip: float | None = Field(None, gt=0.0, description="IVON: element-wise clip of the update direction")
    mc_samples: int = Field(1, ge=1, description="IVON / VGD: posterior samples per step")
    posterior: Literal["gaussian", "student-t"] = Field("gaussian", description="IVON / VGD: sampling distribution")
    dof: int = Field(4, ge=3, description="IVON / VGD: Student-t degrees of freedom")
    vgd_sigma: float = Field(0.01, ge=0.0, description="VGD: posterior standard deviation (isotropic)")
    # subspace training and quantization (genlab.bounds.compression)
    intrinsic_dim: int | None = Field(None, ge=1, description="train theta0 + P w with w in R^d (d = intrinsic_dim)")
    projection: Literal["dense", "sparse", "kron"] = Field("sparse", description="the random projection P")
    projection_scale: Literal["none", "fan-in"] = Field(
        "none", description="row scale of P: none, or 1/sqrt(fan-in) of each layer (equal relative moves)")
    projection_seed: int | None = Field(None, ge=0, description="seed of P (default: seed)")
    projection_groups: list[str] = Field(default_factory=list, json_schema_extra={"flag": "--projection-group"},
                                         description="parameter-name prefixes the subspace covers (default: all)")
    subspace_prior: str | None = Field(None, description="run directory whose final weights are theta0 (a prior "
                                                         "centre for data-dependent bounds); default: the random "
                                                         "initialisation from seed")
    subspace_noise: float = Field(0.0, ge=0.0, description="std of Gaussian noise added to w in training forward "
                                                          "passes (flat minima that survive quantization)")
    quant_levels: int | None = Field(None, ge=1, le=256, description="quantization-aware training of w with a "
                                                                     "learned codebook of this many levels")
    quant_init: Literal["quantiles", "kmeans"] = Field("kmeans", description="codebook initialisation from w")
    quant_stages: int = Field(1, ge=1, le=16, description="progressive quantization: K equal stages quantizing "
                              "1/2, 3/4, ..., then all of w (1: all at once)")
    init_from: str | None = Field(None, description="run directory whose final weights start this run (same "
                                                    "model; with quant_levels, the codebook is fitted to its w)")
    # noise injected into the step (genlab.train.noise_injection)
    noise: Literal["none", "label", "dropconnect", "anti-pgd"] = Field(
        "none", description="noise injection: label, dropconnect or anti-pgd (with noise_sigma)")
    noise_sigma: float = Field(0.0, ge=0.0, description="label: target std (regression) or flip probability; "
                                                        "dropconnect: drop rate (< 1); anti-pgd: perturbation std")
    # bookkeeping (do not change the trajectory)
    eval_every: int | None = Field(None, ge=1, description="steps between evaluations; default: one epoch")
    checkpoint_every: int | None = Field(None, ge=1, description="steps between checkpoints; default: eval_every")
    eval_batch_size: int = Field(1000, ge=1, description="chunk size for full-dataset passes")
    dtype: Literal["float32", "float64"] = Field("float32", description="float32 | float64")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    # curvature tracking (genlab.curvature.SharpnessTracker; does not change the trajectory)
    track_sharpness: int | None = Field(None, ge=1, description="steps between sharpness measurements")
    track_top_k: int = Field(1, ge=1, le=100, description="top Hessian eigenvalues tracked")
    track_trace: int = Field(0, ge=0, description="Hutch++ products for the Hessian trace per measurement (0: off)")
    track_jacobian: bool = Field(False, description="also track input-output Jacobian norms")
    # logging (does not change the trajectory)
    tensorboard: bool = Field(False, description="also write TensorBoard event files to RUN/tensorboard/")
    # 2: momentum None means the optimizer's default (runs written before kept 0.0 for Adam's 0.9)
    config_version: int = Field(2, ge=1, le=2, description="format of these settings (set by genlab)",
                                json_schema_extra={"flag": None})

    @field_validator("dataset", "model", "optimizer")
    @classmethod
    def _known_name(cls, v: str, info: ValidationInfo) -> str:
        from genlab.data import DATASETS
        from genlab.models import MODELS
        from genlab.train.optimizers import OPTIMIZERS

        registry = {"dataset": DATASETS, "model": MODELS, "optimizer": OPTIMIZERS}[info.field_name]
        if v not in registry:
            raise ValueError(f"unknown {info.field_name} {v!r}; allowed: {', '.join(registry)}")
        return v

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError(f"unknown device {v!r}; allowed: auto, cpu, cuda, cuda:N, mps")

    @model_validator(mode="after")
    def _noise_sigma_range(self) -> TrainConfig:
        if self.noise == "dropconnect" and not self.noise_sigma < 1:
            raise ValueError(f"noise_sigma is the dropconnect drop rate and must be < 1 (got {self.noise_sigma})")
        if self.noise == "label" and self.noise_sigma > 1 and self.loss == "ce":
            raise ValueError(f"noise_sigma is a flip probability for classification labels (got {self.noise_sigma})")
        return self

    @model_validator(mode="after")
    def _quantization_settings(self) -> TrainConfig:
        if self.quant_stages > 1 and self.quant_levels is None:
            raise ValueError("quant_stages needs quant_levels (quantization-aware training)")
        return self

    @model_validator(mode="after")
    def _subspace_settings(self) -> TrainConfig:
        if self.intrinsic_dim is None and (self.quant_levels is not None or self.subspace_prior is not None
                                           or self.projection_groups or self.subspace_noise > 0
                                           or self.projection_scale != "none"):
            raise ValueError("quant_levels, subspace_prior, subspace_noise, projection_groups and projection_scale "
                             "need intrinsic_dim (subspace training)")
        return self

    @model_validator(mode="after")
    def _no_settings_of_features_that_are_off(self) -> TrainConfig:
        """A setting of a feature this run does not use would be ignored: refuse it (one line)."""
        from genlab.train.optimizers import OPTIMIZERS

        if self.optimizer not in OPTIMIZERS:
            return self
        mine = set(OPTIMIZERS[self.optimizer].settings)
        owners: dict[str, list[str]] = {}
        for name, spec in OPTIMIZERS.items():
            for key in spec.settings:
                owners.setdefault(key, []).append(name)
        off = {k: f"optimizer {' / '.join(v)}" for k, v in owners.items() if k not in mine}
        if self.noise == "none":
            off["noise_sigma"] = "noise injection (noise label / dropconnect / anti-pgd)"
        if self.track_sharpness is None:
            off.update({k: "track_sharpness" for k in ("track_top_k", "track_trace", "track_jacobian")})
        for key, feature in off.items():
            if key in type(self).model_fields and getattr(self, key) != type(self).model_fields[key].get_default(
                    call_default_factory=True):
                raise ValueError(f"{key}: a setting of {feature}, which this run does not use (optimizer "
                                 f"{self.optimizer}); remove it")
        return self

    @model_validator(mode="after")
    def _one_length(self) -> TrainConfig:
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give epochs or steps, not both")
        return self

    # Settings that may change between a run and its resumption without
    # changing the trajectory it follows (lengthening a run is allowed).
    RESUMABLE_CHANGES: ClassVar[tuple[str, ...]] = ("epochs", "steps", "eval_every", "checkpoint_every", "device",
                                          "eval_batch_size", "data_dir", "track_sharpness", "track_top_k",
                                          "track_trace", "track_jacobian", "tensorboard", "config_version")

    def trajectory_fields(self) -> dict[str, Any]:
        """The settings that define the optimisation trajectory (for resume checks)."""
        out = {k: v for k, v in self.model_dump().items() if k not in self.RESUMABLE_CHANGES}
        if out.get("momentum") is None:  # the optimizer's default, spelled out: None and 0.0 are one SGD
            out["momentum"] = 0.9 if self.optimizer == "adam" else 0.0
        return out


def format_validation_error(err: ValidationError) -> str:
    """One line naming each bad field, what is wrong and the value given."""
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "config"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown setting"
            parts.append(f"{field}: {msg}")
            continue
        if "input" in e and not isinstance(e["input"], dict):
            msg += f" (got {e['input']!r})"
        parts.append(f"{field}: {msg}")
    return "bad setting " + "; ".join(parts)


def validate_config(model: type[BaseModel], values: dict[str, Any]) -> BaseModel:
    """Build ``model`` from ``values``, turning validation errors into one-line :class:`ConfigError`."""
    try:
        return model(**values)
    except ValidationError as err:
        msg = format_validation_error(err)
        if any(e["type"] == "extra_forbidden" for e in err.errors()):
            msg += f"; allowed settings: {', '.join(model.model_fields)}"
        raise ConfigError(msg) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict (one clear error if unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path}: unknown format {suffix or '(none)'}; allowed: .toml, .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid {suffix[1:].upper()}: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of settings, not {type(data).__name__}")
    return data


def merge_settings(file_values: dict[str, Any] | None, flag_values: dict[str, Any]) -> dict[str, Any]:
    """File settings overridden by the flags that were given (``None`` means not given)."""
    merged = dict(file_values or {})
    for key, value in flag_values.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}  # KEY=VALUE flags override single options of a file table
        else:
            merged[key] = value
    return merged


def parse_key_values(items: list[str] | None, flag: str) -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` flags; values are read as JSON when they parse, else strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{flag}: expected KEY=VALUE (got {item!r})")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out
