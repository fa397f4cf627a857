"""Settings of ``genlab bound``: one base training config (the subspace stage) plus each stage's overrides.

The compression pipeline (:mod:`genlab.bounds.compression.pipeline`) trains up to three ordinary runs: the
prior centre (data-dependent bounds only), the subspace run, and quantization-aware fine-tuning from it.
:class:`BoundConfig` holds *one* :class:`~genlab.config.TrainConfig` -- the subspace run, with every training
setting ``genlab train`` has, under the same names -- and the few settings that differ in the other stages or
belong to the certificate. Each stage's config is derived from the base (:meth:`BoundConfig.prior_stage`,
:meth:`~BoundConfig.subspace_stage`, :meth:`~BoundConfig.quantization_stage`), never copied.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from genlab.config import TrainConfig, flatten_settings, validate_config
from genlab.settings.sections import QuantizationSettings, SubspaceSettings

#: genlab bound's defaults for the base training config (where they differ from genlab train's): a small CNN,
#: Adam with a cosine schedule, a 500-dimensional subspace; MNIST-1D in seconds. BatchNorm follows genlab train
#: (on, for the models that have it): its running statistics are coded in the message
BOUND_BASE: dict[str, Any] = {"model": "cnn", "optimizer": "adam", "lr": 0.05,
                              "lr_schedule": "cosine", "batch_size": 100, "epochs": 30, "intrinsic_dim": 500}
#: settings of the base the pipeline sets itself, stage by stage
STAGE_OWNED = (*QuantizationSettings.model_fields, "init_from", "subspace_prior", "distill_from")
#: spellings of earlier versions (config files, certificates' recorded settings)
_RENAMED = {"levels": "quant_levels", "qat_stages": "quant_stages"}


class BoundStages(BaseModel):
    """The bound's own settings: the other stages' overrides, the prior split, and the certificate's."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    quant_levels: int = Field(7, ge=2, le=256, description="codebook levels L of the quantized stage",
                              json_schema_extra={"aliases": ["--levels"]})
    quant_init: Literal["quantiles", "kmeans"] = Field("kmeans", description="codebook initialisation from w")
    quant_stages: int = Field(1, ge=1, le=16, description="progressive quantization in K stages: 1/2, 3/4, ..., "
                                                          "all of w (1: all at once)",
                              json_schema_extra={"aliases": ["--qat-stages"]})
    quant_rate: float = Field(0.0, ge=0.0, le=100.0, description="rate-aware assignment of the quantized "
                              "stage: squared error + R x spacing^2 x code length in bits (0: nearest level)")
    qat_epochs: int = Field(5, ge=1, description="epochs of quantization-aware training")
    qat_lr: float = Field(0.005, gt=0, description="learning rate of quantization-aware training")
    prior_split: int | None = Field(None, ge=1, description="data-dependent bound: train a prior centre on the "
                                                            "first M points and bound the rest (inputs "
                                                            "standardised on those M: normalise_first)")
    prior_dataset: str | None = Field(None, description="transfer: train the prior centre on all of this other "
                                                        "dataset (same input shape and classes) and bound all n "
                                                        "points of this one")
    prior_epochs: int = Field(5, ge=1, description="epochs of the prior centre's training")
    prior_lr: float = Field(0.001, gt=0, description="learning rate of the prior centre's training")
    from_model: str | None = Field(None, description="certify after the fact: fit the compressed predictor to this "
                                                     "network (.safetensors of the same architecture, or a run "
                                                     "directory) instead of the labels")
    buffer_levels: int = Field(32, ge=2, le=256, description="evenly spaced levels of each buffer (BatchNorm running "
                                                             "statistics) coded in the message")
    delta: float = Field(0.05, gt=0, lt=1, description="failure probability of the bound")
    symbol_model: Literal["adaptive", "two-part"] = Field("adaptive", description="the arithmetic coder's symbol "
                                                                                  "model")
    reported_bound: str = Field("occam_kl", json_schema_extra={"flag": "--bound"},
                                description="the bound reported: occam_kl | langford_seeger | mcallester | catoni_grid")
    grid: dict[str, list] | None = Field(None, description="the declared hyper-parameter grid (default: "
                                                           "genlab.bounds.compression.DEFAULT_GRID)",
                                         json_schema_extra={"flag": None})


class BoundConfig(BoundStages):
    """Settings of :func:`~genlab.bounds.compression.compression_bound` (``genlab bound``).

    Built from flat settings -- ``BoundConfig(dataset="digits", model="mlp", intrinsic_dim=50, quant_levels=5)``
    -- where every key that is not one of :class:`BoundStages` is a training setting of the base (on top of
    :data:`BOUND_BASE`), or from ``{"train": {...}, "quant_levels": 5, ...}``.
    """

    train: TrainConfig = Field(default_factory=lambda: TrainConfig(**BOUND_BASE))

    @model_validator(mode="before")
    @classmethod
    def _base_and_overrides(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        own, base = {}, dict(BOUND_BASE)
        for key, value in values.items():
            key = _RENAMED.get(key, key)
            if key == "noise" and not isinstance(value, str):  # earlier: the std of the subspace noise
                key = "subspace_noise"
            if key == "train":
                base.update(flatten_settings(value.model_dump() if isinstance(value, BaseModel) else value))
            elif key in BoundStages.model_fields:
                own[key] = value
            else:
                base[key] = value
        defaults = TrainConfig().flat()
        owned = [k for k in STAGE_OWNED if base.get(k) not in (None, defaults[k])]
        if owned:
            raise ValueError(f"{owned[0]}: set by genlab bound's stages (use quant_levels, quant_init, "
                             f"quant_stages, prior_split, from_model); remove it from the training settings")
        if own.get("prior_split") is not None and own.get("from_model") is None \
                and base.get("normalise_first") is None:
            # the prior split's own statistics are free in the certificate; the dataset's published ones (from
            # every training point, the bound's included) cost 64 bits (certificate.preprocessing_bits)
            base["normalise_first"] = own["prior_split"]
        return {**own, "train": base}

    @model_validator(mode="after")
    def _subspace(self) -> BoundConfig:
        if self.train.plugins.subspace.intrinsic_dim is None:
            raise ValueError("intrinsic_dim: a compression bound trains in a subspace; give its dimension")
        if self.train.plugins.subspace.subspace_buffers == "prior" and self.prior_split is None \
                and self.prior_dataset is None:
            raise ValueError("subspace_buffers: prior keeps a trained prior centre's statistics; it needs "
                             "prior_split (a data-dependent bound) or prior_dataset (a transfer prior)")
        if self.prior_dataset is not None:
            from genlab.data import DATASETS

            if self.prior_split is not None:
                raise ValueError("prior_dataset and prior_split: a prior centre is trained either on another "
                                 "dataset (transfer) or on this one's first points; give one of them")
            if self.prior_dataset not in DATASETS:
                raise ValueError(f"prior_dataset: unknown dataset {self.prior_dataset!r}; allowed: "
                                 f"{', '.join(DATASETS)}")
            if self.prior_dataset == self.train.data.name:
                raise ValueError(f"prior_dataset: {self.prior_dataset} is the dataset being bounded; a prior on "
                                 f"its own points is prior_split")
        return self

    @classmethod
    def flat_names(cls) -> list[str]:
        """The flat setting names a bound takes: the base's (less those its stages set) and the stages'."""
        return [k for k in TrainConfig.flat_names() if k not in STAGE_OWNED] + list(BoundStages.model_fields)

    def flat(self) -> dict[str, Any]:
        """Every setting under its flat name: the base's and the stages'."""
        return {**self.train.flat(), **{k: getattr(self, k) for k in BoundStages.model_fields}}

    def subspace_stage(self, prior_dir: str | None = None, original: str | None = None) -> TrainConfig:
        """The subspace run: the base, centred on the prior run's weights when there is one, fitted to the
        original network's probabilities when certifying one after the fact."""
        return self.train.with_changes(subspace_prior=prior_dir, distill_from=original)

    def prior_stage(self) -> TrainConfig:
        """The prior centre: a plain run (no subspace) of the same model on the first ``prior_split`` points,
        on their labels (never distilled: an original network has seen the points the bound is on); or, with
        ``prior_dataset``, on all of that dataset with its own options and normalisation."""
        plain = {k: f.get_default(call_default_factory=True) for k, f in SubspaceSettings.model_fields.items()}
        if self.prior_dataset is not None:
            return self.train.with_changes(**plain, dataset=self.prior_dataset, n_train=None, dataset_options={},
                                           normalise_first=None, lr=self.prior_lr, epochs=self.prior_epochs)
        return self.train.with_changes(**plain, n_train=self.prior_split, lr=self.prior_lr, epochs=self.prior_epochs)

    def quantization_stage(self, subspace_dir: str, prior_dir: str | None = None,
                           original: str | None = None) -> TrainConfig:
        """Quantization-aware fine-tuning started from the subspace run (no subspace noise)."""
        return self.train.with_changes(subspace_prior=prior_dir, subspace_noise=0.0, lr=self.qat_lr,
                                       epochs=self.qat_epochs, quant_levels=self.quant_levels,
                                       quant_init=self.quant_init, quant_stages=self.quant_stages,
                                       quant_rate=self.quant_rate,
                                       init_from=subspace_dir, distill_from=original)


def bound_config(values: dict[str, Any]) -> BoundConfig:
    """:class:`BoundConfig` from flat or sectioned settings, one :class:`~genlab.errors.ConfigError` line if bad."""
    return validate_config(BoundConfig, values)
