"""``genlab bound``: train in a subspace, quantize, code, certify -- each stage an ordinary run directory.

``OUT/`` holds ``prior/`` (data-dependent bounds only: the prior centre, a plain run on the first ``m`` points),
``subspace/`` (the subspace run), ``quantized/`` (quantization-aware fine-tuning started from it), and the
certificate: ``certificate.json``, ``message.bin`` (and ``prior.safetensors``). Every stage resumes like any run,
so an interrupted ``genlab bound`` picks up where it stopped; ``--from-run`` starts from an existing subspace run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from genlab.bounds.compression.certificate import BOUND_NAMES, DEFAULT_GRID, certify, check_choices_in_grid
from genlab.config import TrainConfig, validate_config
from genlab.errors import ConfigError


class BoundConfig(BaseModel):
    """Settings of :func:`compression_bound` (``genlab bound``); defaults finish MNIST-1D in seconds."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = "mnist1d"
    model: str = "cnn"
    width: int | None = Field(None, ge=1)
    depth: int | None = Field(None, ge=1)
    activation: str | None = None
    model_options: dict[str, Any] = Field(default_factory=dict)
    data_dir: str | None = None
    seed: int = Field(0, ge=0)
    # subspace training
    intrinsic_dim: int = Field(500, ge=1)
    projection: Literal["dense", "sparse", "kron"] = "sparse"
    projection_groups: list[str] = Field(default_factory=list)
    projection_scale: Literal["none", "fan-in"] = "none"
    optimizer: str = "adam"
    lr: float = Field(0.05, gt=0)
    batch_size: int = Field(100, ge=1)
    epochs: int = Field(30, ge=1)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    noise: float = Field(0.0, ge=0, description="std of Gaussian noise on w during subspace training")
    # quantization-aware training
    levels: int = Field(7, ge=2, le=256)
    quant_init: Literal["quantiles", "kmeans"] = "kmeans"
    qat_epochs: int = Field(5, ge=1)
    qat_lr: float = Field(0.005, gt=0)
    qat_stages: int = Field(1, ge=1, le=16, description="progressive quantization in K stages (1: all at once)")
    # data-dependent prior
    prior_split: int | None = Field(None, ge=1, description="train a prior centre on the first m points; bound the rest")
    prior_epochs: int = Field(5, ge=1)
    prior_lr: float = Field(0.001, gt=0)
    # the bound
    delta: float = Field(0.05, gt=0, lt=1)
    symbol_model: Literal["adaptive", "two-part"] = "adaptive"
    reported_bound: str = "occam_kl"
    grid: dict[str, list] | None = None
    device: str = "auto"

    def stage_config(self, **changes: Any) -> TrainConfig:
        base = dict(dataset=self.dataset, model=self.model, width=self.width, depth=self.depth,
                    activation=self.activation, model_options=self.model_options, data_dir=self.data_dir,
                    seed=self.seed, batch_size=self.batch_size, device=self.device, batchnorm=False,
                    lr_schedule=self.lr_schedule)
        return validate_config(TrainConfig, {**base, **changes})


def compression_bound(settings: BoundConfig, out: str | Path, *, from_run: str | Path | None = None,
                      quiet: bool = False) -> dict[str, Any]:
    """Run the compression pipeline and return the certificate (also in ``out/certificate.json``).

    Args:
        settings: what to train and how to bound it.
        out: the directory of the stage runs and the certificate.
        from_run: an existing complete subspace run to quantize instead of training one.
        quiet: no progress output from the stages.
    """
    from genlab.train import train

    if settings.reported_bound not in BOUND_NAMES:
        raise ConfigError(f"reported bound {settings.reported_bound!r} unknown; allowed: {', '.join(BOUND_NAMES)}")
    grid = settings.grid if settings.grid is not None else DEFAULT_GRID
    choices = {"model": settings.model, "prior_split": settings.prior_split, "prior_epochs": settings.prior_epochs,
               "prior_lr": settings.prior_lr, "quant_init": settings.quant_init}
    planned = {**settings.stage_config().model_dump(), **choices, "intrinsic_dim": settings.intrinsic_dim, "quant_levels": settings.levels,
               "projection": settings.projection, "projection_scale": settings.projection_scale,
               "symbol_model": settings.symbol_model, "epochs": settings.epochs,
               "lr": settings.lr, "subspace_noise": settings.noise, "qat_epochs": settings.qat_epochs, "qat_lr": settings.qat_lr,
               "quant_stages": settings.qat_stages,
               "optimizer": settings.optimizer}
    check_choices_in_grid(planned, grid)   # before any training: a choice outside the grid
    out = Path(out)
    times: dict[str, float] = {}
    prior_dir = None
    if settings.prior_split is not None:
        t = time.perf_counter()
        prior_dir = out / "prior"
        train(settings.stage_config(n_train=settings.prior_split, optimizer=settings.optimizer, lr=settings.prior_lr,
                                    epochs=settings.prior_epochs), prior_dir, quiet=quiet)
        times["prior_training"] = time.perf_counter() - t
    subspace = dict(intrinsic_dim=settings.intrinsic_dim, projection=settings.projection,
                    projection_groups=settings.projection_groups, projection_scale=settings.projection_scale,
                    subspace_prior=str(prior_dir) if prior_dir else None)
    t = time.perf_counter()
    if from_run is None:
        sub_dir = out / "subspace"
        train(settings.stage_config(**subspace, optimizer=settings.optimizer, lr=settings.lr, epochs=settings.epochs,
                                    subspace_noise=settings.noise),
              sub_dir, quiet=quiet)
    else:
        sub_dir = Path(from_run)
    times["subspace_training"] = time.perf_counter() - t
    t = time.perf_counter()
    q_dir = out / "quantized"
    train(settings.stage_config(**subspace, optimizer=settings.optimizer, lr=settings.qat_lr,
                                epochs=settings.qat_epochs, quant_levels=settings.levels,
                                quant_init=settings.quant_init, quant_stages=settings.qat_stages,
                                init_from=str(sub_dir)), q_dir, quiet=quiet)
    times["quantization"] = time.perf_counter() - t
    return certify(q_dir, out, delta=settings.delta, grid=grid, choices=choices, symbol_model=settings.symbol_model,
                   reported_bound=settings.reported_bound, data_dir=settings.data_dir, stage_times=times,
                   settings=settings.model_dump())
