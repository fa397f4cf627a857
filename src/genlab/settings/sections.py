"""The sections of a training run's settings: data, model, the run itself, and each plugin's own.

Every section is a small pydantic model (pydantic only: the CLI builds its flags from these without importing
torch). A field's *flat name* -- the key in a flat config file, in a sweep and, with dashes, the flag -- is the
field's name, or the ``flat`` its ``json_schema_extra`` gives (``data.name`` is ``dataset``). Flat names are
unique across sections, so a flat file maps onto the sections without ambiguity.

Each section declares which of its settings may change when a run is resumed (:attr:`Section.RESUMABLE`)
and, for a plugin that can be off, refuses its other settings while it is off (a setting that would be
ignored is a mistake: one line naming it).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def flat_name(name: str, field) -> str:
    """The flat spelling of a section field (its name unless it declares another)."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return extra.get("flat", name)


def registered(name: str, registry, what: str) -> str:
    """``name`` if ``registry`` holds it, else one line naming what is allowed."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; allowed: {', '.join(registry)}")
    return name


class Section(BaseModel):
    """One section of settings: unknown keys are refused, assignments validated."""

    # strict: no bool/str coercion (``steps = true``, ``batch_size = "64"`` are refused), finite numbers only
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), strict=True,
                              allow_inf_nan=False)

    #: settings that may change between a run and its resumption (they do not change the trajectory)
    RESUMABLE: ClassVar[frozenset[str]] = frozenset()
    #: (switch, value meaning off, how the feature is named): while off, the section's other settings must keep
    #: their defaults
    SWITCH: ClassVar[tuple[str, Any, str] | None] = None

    @model_validator(mode="after")
    def _no_settings_while_off(self):
        if self.SWITCH is None:
            return self
        switch, off, feature = self.SWITCH
        if getattr(self, switch) != off:
            return self
        for name, field in type(self).model_fields.items():
            if name != switch and getattr(self, name) != field.get_default(call_default_factory=True):
                raise ValueError(f"{flat_name(name, field)}: a setting of {feature}, which this run does not use; "
                                 f"remove it")
        return self

    def flat(self) -> dict[str, Any]:
        """``{flat name: value}`` of this section."""
        return {flat_name(k, f): getattr(self, k) for k, f in type(self).model_fields.items()}


class DataSettings(Section):
    """What the model is trained on."""

    RESUMABLE = frozenset({"data_dir"})

    name: str = Field("mnist1d", description="dataset name (see genlab datasets)",
                      json_schema_extra={"flat": "dataset", "flag": "--dataset"})
    n_train: int | None = Field(None, ge=1, description="keep the first n training points")
    label_noise: float = Field(0.0, ge=0.0, le=1.0, description="fraction of training labels corrupted")
    loss: Literal["ce", "mse"] | None = Field(None, description="ce or mse (one-hot); default: the dataset's")
    data_dir: str | None = Field(None, description="directory of dataset files (default $GENLAB_DATA, then "
                                                   "../shared/data, then the user cache)")
    dataset_options: dict[str, Any] = Field(default_factory=dict, description="dataset option KEY=VALUE",
                                            json_schema_extra={"flag": "--dataset-option"})
    normalise_first: int | None = Field(None, ge=1, description="standardise inputs per channel with the "
                                        "statistics of the first N training points (a data-dependent bound's "
                                        "prior split: then free in the certificate)")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from genlab.data import DATASETS  # on validation only: the registries import torch

        return registered(v, DATASETS, "dataset")


class ModelSettings(Section):
    """The network and its initialisation."""

    name: str = Field("mlp", description="model name (see genlab models)",
                      json_schema_extra={"flat": "model", "flag": "--model"})
    width: int | None = Field(None, ge=1, le=2 ** 20, description="model width (the family's default)")
    depth: int | None = Field(None, ge=1, le=1024, description="model depth (the family's default)")
    activation: str | None = Field(None, description="activation: relu, tanh, ... (the family's default)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout rate in [0, 1)")
    batchnorm: bool = Field(True, description="BatchNorm in resnet")
    model_options: dict[str, Any] = Field(default_factory=dict, description="model option KEY=VALUE",
                                          json_schema_extra={"flag": "--model-option"})

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from genlab.models import MODELS  # on validation only: the registries import torch

        return registered(v, MODELS, "model")

    @field_validator("model_options")
    @classmethod
    def _not_a_setting(cls, v: dict[str, Any]) -> dict[str, Any]:
        # --model-option batchnorm=true would reach the factory twice (a TypeError deep in the build)
        clash = sorted(set(v) & {"width", "depth", "dropout", "activation", "batchnorm"})
        if clash:
            flag = "--batchnorm / --no-batchnorm" if clash[0] == "batchnorm" else f"--{clash[0]}"
            raise ValueError(f"{clash[0]!r} is a setting of its own ({flag}), not a model option")
        return v


class RunSettings(Section):
    """Length, batching, seed and bookkeeping of the loop (bookkeeping does not change the trajectory)."""

    RESUMABLE = frozenset({"epochs", "steps", "eval_every", "checkpoint_every", "device", "eval_batch_size"})

    batch_size: int = Field(64, ge=1, le=10 ** 12, description="mini-batch size (ignored by full-batch optimizers; "
                                                                "beyond the training set: the whole set)")
    epochs: int | None = Field(None, ge=1, le=10 ** 9, description="length in epochs (default 10)")
    steps: int | None = Field(None, ge=1, le=10 ** 12, description="length in optimizer steps (instead of epochs)")
    seed: int = Field(0, ge=0, lt=2 ** 63, description="seed of init, batch order, label noise, dropout")
    eval_every: int | None = Field(None, ge=1, description="steps between evaluations; default: one epoch")
    checkpoint_every: int | None = Field(None, ge=1, description="steps between checkpoints; default: eval_every")
    eval_batch_size: int = Field(1000, ge=1, le=2 ** 24, description="chunk size for full-dataset passes")
    dtype: Literal["float32", "float64"] = Field("float32", description="float32 | float64")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError(f"unknown device {v!r}; allowed: auto, cpu, cuda, cuda:N, mps")

    @model_validator(mode="after")
    def _one_length(self):
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give epochs or steps, not both")
        return self


# ------------------------------------------------------------------------------------------------ plugins
class NoiseSettings(Section):
    """Noise injected into each step (:mod:`genlab.train.noise_injection`)."""

    SWITCH = ("noise", "none", "noise injection (noise label / dropconnect / anti-pgd)")

    noise: Literal["none", "label", "dropconnect", "anti-pgd"] = Field(
        "none", description="noise injection: label, dropconnect or anti-pgd (with noise_sigma)")
    noise_sigma: float = Field(0.0, ge=0.0, description="label: target std (regression) or flip probability; "
                                                        "dropconnect: drop rate (< 1); anti-pgd: perturbation std")

    @model_validator(mode="after")
    def _sigma_range(self):
        if self.noise == "dropconnect" and not self.noise_sigma < 1:
            raise ValueError(f"noise_sigma is the dropconnect drop rate and must be < 1 (got {self.noise_sigma})")
        return self


class SubspaceSettings(Section):
    """Training in a random subspace theta0 + P w (:mod:`genlab.bounds.compression.subspace`)."""

    intrinsic_dim: int | None = Field(None, ge=1, le=10 ** 8, description="train theta0 + P w with w in R^d (d = intrinsic_dim)")
    projection: Literal["dense", "sparse", "kron"] = Field("sparse", description="the random projection P")
    projection_scale: Literal["none", "fan-in"] = Field(
        "none", description="row scale of P: none, or 1/sqrt(fan-in) of each layer (equal relative moves)")
    projection_seed: int | None = Field(None, ge=0, lt=2 ** 63, description="seed of P (default: seed)")
    projection_groups: list[str] = Field(default_factory=list, json_schema_extra={"flag": "--projection-group"},
                                         description="parameter-name prefixes the subspace covers (default: all)")
    subspace_prior: str | None = Field(None, description="run directory whose final weights are theta0 (a prior "
                                                         "centre for data-dependent bounds); default: the random "
                                                         "initialisation from seed")
    subspace_noise: float = Field(0.0, ge=0.0, description="std of Gaussian noise added to w in training forward "
                                                          "passes (flat minima that survive quantization)")
    subspace_buffers: Literal["train", "prior"] = Field(
        "train", description="BatchNorm statistics: train them with w (coded in a certificate's message), or keep "
                             "subspace_prior's fixed (normalising with them; part of a data-dependent prior)")

    @model_validator(mode="after")
    def _needs_dim(self):
        if self.intrinsic_dim is None and (self.subspace_prior is not None or self.projection_groups
                                           or self.subspace_noise > 0 or self.projection_scale != "none"
                                           or self.subspace_buffers != "train"):
            raise ValueError("subspace_prior, subspace_noise, subspace_buffers, projection_groups and "
                             "projection_scale need intrinsic_dim (subspace training)")
        return self


class QuantizationSettings(Section):
    """Quantization-aware training of the subspace coordinates (:mod:`genlab.bounds.compression.quantize`)."""

    quant_levels: int | None = Field(None, ge=1, le=256, description="quantization-aware training of w with a "
                                                                     "learned codebook of this many levels")
    quant_init: Literal["quantiles", "kmeans"] = Field("kmeans", description="codebook initialisation from w")
    quant_stages: int = Field(1, ge=1, le=16, description="progressive quantization: K equal stages quantizing "
                              "1/2, 3/4, ..., then all of w (1: all at once)")
    quant_rate: float = Field(0.0, ge=0.0, le=100.0, description="rate-aware assignment: each coordinate takes the "
                              "level minimising squared error + R x spacing^2 x its code length in bits (0: nearest)")

    @model_validator(mode="after")
    def _stages_need_levels(self):
        for name, used in (("quant_stages", self.quant_stages > 1), ("quant_rate", self.quant_rate > 0)):
            if used and self.quant_levels is None:
                raise ValueError(f"{name} needs quant_levels (quantization-aware training)")
        return self


class InitSettings(Section):
    """Where the weights start (:class:`genlab.bounds.compression.subspace.InitFromRuns`)."""

    init_from: str | None = Field(None, description="run directory whose final weights start this run (same "
                                                    "model; with quant_levels, the codebook is fitted to its w)")


class DistillSettings(Section):
    """Knowledge distillation (:mod:`genlab.train.distill`): targets from a given network's probabilities."""

    distill_from: str | None = Field(None, description="weights (.safetensors or a run directory) of a network of "
                                                       "this architecture whose probabilities are the targets")
    distill_temperature: float = Field(1.0, gt=0, le=100, description="temperature T of the targets "
                                                                      "softmax(f / T)")


class AugmentSettings(Section):
    """Data augmentation of the training step's image inputs (:mod:`genlab.train.augment`)."""

    augment_shift: int = Field(0, ge=0, le=64, description="random translations by up to K pixels each way "
                                                           "(edge-replicated), drawn per example and step")
    augment_flip: bool = Field(False, description="random left-right flips (probability 1/2)")


class TrackingSettings(Section):
    """Curvature measured along training (:class:`genlab.curvature.SharpnessTracker`); resumable: it only reads."""

    RESUMABLE = frozenset({"track_sharpness", "track_top_k", "track_trace", "track_jacobian"})
    SWITCH = ("track_sharpness", None, "track_sharpness")

    track_sharpness: int | None = Field(None, ge=1, description="steps between sharpness measurements")
    track_top_k: int = Field(1, ge=1, le=100, description="top Hessian eigenvalues tracked")
    track_trace: int = Field(0, ge=0, le=10 ** 5, description="Hutch++ products for the Hessian trace per measurement (0: off)")
    track_jacobian: bool = Field(False, description="also track input-output Jacobian norms")


class LoggingSettings(Section):
    """Logging (does not change the trajectory)."""

    RESUMABLE = frozenset({"tensorboard"})

    tensorboard: bool = Field(False, description="also write TensorBoard event files to RUN/tensorboard/")


class PluginSettings(BaseModel):
    """The settings of each built-in plugin, under its own key."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)

    noise: NoiseSettings = Field(default_factory=NoiseSettings)
    subspace: SubspaceSettings = Field(default_factory=SubspaceSettings)
    quantization: QuantizationSettings = Field(default_factory=QuantizationSettings)
    init: InitSettings = Field(default_factory=InitSettings)
    distill: DistillSettings = Field(default_factory=DistillSettings)
    augment: AugmentSettings = Field(default_factory=AugmentSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
