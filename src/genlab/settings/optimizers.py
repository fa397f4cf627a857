"""Each optimizer's settings: a discriminated union on ``name`` -- only the chosen optimizer's settings exist.

:data:`OPTIMIZER_SETTINGS` maps an optimizer name to its settings class; the built-in ones are declared here
(pydantic only, so the CLI can generate every optimizer's flags without importing torch), a registered
optimizer brings its own (:class:`genlab.train.optimizers.OptimizerSpec` ``settings=``), a subclass of
:class:`OptimizerSettings`. The training loop hands the chosen instance to the optimizer's builder.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from genlab.settings.sections import Section, flat_name


class OptimizerSettings(Section):
    """Settings every optimizer has: its name, the learning rate and its schedule."""

    name: str = Field("sgd", description="gd | sgd | adam | sgld | gld | ivon | vgd (and registered ones)",
                      json_schema_extra={"flat": "optimizer", "flag": "--optimizer"})
    lr: float = Field(0.1, gt=0.0, description="learning rate")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="constant, or cosine decay from lr to 0 over the run's steps")


_MOMENTUM = "heavy-ball momentum (gd, sgd; default 0) or Adam's beta1 (default 0.9)"
_WEIGHT_DECAY = "L2 weight decay (gd, sgd, adam, ivon)"


class SGDSettings(OptimizerSettings):
    """``gd`` (full batch) and ``sgd`` (mini-batches), optional heavy-ball momentum."""

    momentum: float = Field(0.0, ge=0.0, lt=1.0, description=_MOMENTUM)
    weight_decay: float = Field(0.0, ge=0.0, description=_WEIGHT_DECAY)


class AdamSettings(OptimizerSettings):
    """Adam; ``momentum`` is beta1."""

    momentum: float = Field(0.9, ge=0.0, lt=1.0, description=_MOMENTUM)
    weight_decay: float = Field(0.0, ge=0.0, description=_WEIGHT_DECAY)


class SGLDSettings(OptimizerSettings):
    """``sgld`` and ``gld`` (:class:`genlab.optim.SGLD`): structured Gaussian noise and its bound accounting."""

    sgld_noise: Literal["isotropic", "diagonal", "gradcov", "sqrt-gradcov"] = Field(
        "isotropic", description="SGLD noise shape")
    noise_trace: float = Field(1e-4, gt=0.0, description="SGLD: total noise variance tr(Sigma) added per step")
    noise_floor: float = Field(1e-3, gt=0.0, le=1.0, description="SGLD: share of noise_trace spread isotropically")
    sgld_cov: Literal["batch", "heldout"] = Field(
        "heldout", description="SGLD: estimate C on held-out points (data-independent prior; a bound) or on the "
                               "step's batch (no bound)")
    sgld_completion: bool = Field(True, description="SGLD: complete the low-rank C with its estimated unseen "
                                                    "variance (genlab.optim.noise)")
    sgld_cov_size: int | None = Field(None, ge=2, le=2 ** 20, description="SGLD: points C is estimated on (default batch_size)")
    sgld_bound: Literal["heldout", "negrea", "cmi", "off"] = Field(
        "heldout", description="SGLD: the information-theoretic bound accounted along the run: heldout (Wang et "
                               "al.: prior drift from held-out points), negrea (Negrea et al. 2019: prior drift "
                               "from a random subset S_J of the sample, bound on the other points), cmi (Haghifam "
                               "et al. 2020: super-sample of pairs, bound from the pairs' gradient differences) "
                               "or off")
    sgld_prior_size: int | None = Field(
        None, ge=1, description="SGLD, --sgld-bound negrea|cmi: m, the training points the prior knows (negrea: "
                                "S_J, default n/2; cmi: the unpaired points, default n - 1)")
    sgld_supersample_seed: int | None = Field(
        None, ge=0, description="SGLD, --sgld-bound cmi: seeds which n - m training points are paired, and with "
                                "which points beyond n_train (default: the run's seed, so seeds draw it afresh)")

    @field_validator("sgld_bound", mode="before")
    @classmethod
    def _bool_is_heldout_or_off(cls, value):
        # runs written before the bound had modes recorded ``sgld_bound: true/false``
        return {True: "heldout", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _bound_settings_fit_the_bound(self):
        if self.sgld_prior_size is not None and self.sgld_bound not in ("negrea", "cmi"):
            raise ValueError("sgld_prior_size: a setting of --sgld-bound negrea or cmi, which this run does not "
                             "use; remove it")
        if self.sgld_supersample_seed is not None and self.sgld_bound != "cmi":
            raise ValueError("sgld_supersample_seed: a setting of --sgld-bound cmi, which this run does not use; "
                             "remove it")
        if self.sgld_bound == "cmi" and self.sgld_cov == "batch" and self.sgld_noise != "isotropic":
            raise ValueError("sgld_cov: batch is not allowed with --sgld-bound cmi (the covariance would depend "
                             "on which member of each pair trains); allowed: heldout")
        return self


class _PosteriorSampling(OptimizerSettings):
    mc_samples: int = Field(1, ge=1, le=10 ** 4, description="IVON / VGD: posterior samples per step")
    posterior: Literal["gaussian", "student-t"] = Field("gaussian", description="IVON / VGD: sampling distribution")
    dof: int = Field(4, ge=3, le=10 ** 6, description="IVON / VGD: Student-t degrees of freedom")


class IVONSettings(_PosteriorSampling):
    """IVON (:class:`genlab.optim.IVON`)."""

    ess: float | None = Field(None, gt=0.0, description="IVON: effective sample size (default: the training-set size)")
    hess_init: float = Field(1.0, gt=0.0, description="IVON: initial Hessian estimate h0")
    ivon_beta1: float = Field(0.9, ge=0.0, lt=1.0, description="IVON: gradient momentum")
    ivon_beta2: float = Field(0.99999, ge=0.0, le=1.0, description="IVON: Hessian-estimate momentum")
    ivon_clip: float | None = Field(None, gt=0.0, description="IVON: element-wise clip of the update direction")
    weight_decay: float = Field(0.0, ge=0.0, description=_WEIGHT_DECAY)


class VGDSettings(_PosteriorSampling):
    """Variational GD (:class:`genlab.optim.VariationalGD`)."""

    vgd_sigma: float = Field(0.01, ge=0.0, description="VGD: posterior standard deviation (isotropic)")


#: optimizer name -> its settings class (built-ins here; registered optimizers add theirs)
OPTIMIZER_SETTINGS: dict[str, type[OptimizerSettings]] = {
    "gd": SGDSettings, "sgd": SGDSettings, "adam": AdamSettings, "sgld": SGLDSettings, "gld": SGLDSettings,
    "ivon": IVONSettings, "vgd": VGDSettings}


def optimizer_settings_class(name: str) -> type[OptimizerSettings]:
    """The settings class of optimizer ``name`` (extensions are loaded for names not known yet)."""
    if name not in OPTIMIZER_SETTINGS:
        from genlab.registry import load_extensions

        load_extensions()
    if name not in OPTIMIZER_SETTINGS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZER_SETTINGS)}")
    return OPTIMIZER_SETTINGS[name]


def owners_of(flat: str) -> list[str]:
    """The optimizers that have a setting of this flat name."""
    return [n for n, cls in OPTIMIZER_SETTINGS.items()
            if any(flat_name(k, f) == flat for k, f in cls.model_fields.items())]
