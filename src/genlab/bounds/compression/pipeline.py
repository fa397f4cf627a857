"""``genlab bound``: train in a subspace, quantize, code, certify -- each stage an ordinary run directory.

``OUT/`` holds ``prior/`` (data-dependent bounds only: the prior centre, a plain run on the first ``m`` points,
or on another dataset for a transfer prior),
``subspace/`` (the subspace run), ``quantized/`` (quantization-aware fine-tuning started from it), and the
certificate: ``certificate.json``, ``message.bin`` (and ``prior.safetensors``; ``original.safetensors`` after the fact,
``--from-model``). Every stage resumes like any run,
so an interrupted ``genlab bound`` picks up where it stopped; ``--from-run`` starts from an existing subspace run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genlab.bounds.compression.certificate import BOUND_NAMES, DEFAULT_GRID, certify, check_choices_in_grid
from genlab.errors import ConfigError
from genlab.settings.bound import BoundConfig

__all__ = ["BoundConfig", "compression_bound"]


def compression_bound(settings: BoundConfig, out: str | Path, *, from_run: str | Path | None = None,
                      quiet: bool = False, original: torch.nn.Module | None = None) -> dict[str, Any]:
    """Run the compression pipeline and return the certificate (also in ``out/certificate.json``).

    Args:
        settings: what to train and how to bound it.
        out: the directory of the stage runs and the certificate.
        from_run: an existing complete subspace run to quantize instead of training one.
        quiet: no progress output from the stages.
        original: certify this trained network after the fact (as ``settings.from_model`` does for a weights
            file or run directory): an ``nn.Module`` of the architecture ``settings`` names; the compressed
            predictor is fitted to its probabilities and the certificate reports their agreement
            (:mod:`~genlab.bounds.compression.original`).
    """
    from genlab.train import train

    if str(out).strip() == "":
        raise ConfigError("--out is empty; give a directory for the certificate and its stage runs")
    if settings.reported_bound not in BOUND_NAMES:
        raise ConfigError(f"reported bound {settings.reported_bound!r} unknown; allowed: {', '.join(BOUND_NAMES)}")
    grid = settings.grid if settings.grid is not None else DEFAULT_GRID
    choices = {"model": settings.train.model.name, "prior_split": settings.prior_split,
               "prior_dataset": settings.prior_dataset,
               "prior_epochs": settings.prior_epochs, "prior_lr": settings.prior_lr, "quant_init": settings.quant_init}
    check_choices_in_grid(settings.flat(), grid)   # before any training: a choice outside the grid
    out = Path(out)
    distill, source = None, None
    if settings.from_model is not None or original is not None:
        from genlab.bounds.compression.original import prepare_original

        distill = str(prepare_original(settings.train, out, settings.from_model, original))
        source = settings.from_model or f"nn.Module {type(original).__name__} (Python)"
    # each stage's own training time, from its summary: a rerun that reuses a finished stage keeps it
    times: dict[str, float] = {}
    prior_dir = None
    if settings.prior_split is not None or settings.prior_dataset is not None:
        prior_dir = out / "prior"
        times["prior_training"] = _wall_time(train(settings.prior_stage(), prior_dir, quiet=quiet).summary)
    prior = str(prior_dir) if prior_dir else None
    if from_run is None:
        sub_dir = out / "subspace"
        times["subspace_training"] = _wall_time(train(settings.subspace_stage(prior, distill), sub_dir,
                                                      quiet=quiet).summary)
    else:
        sub_dir = Path(from_run)
        times["subspace_training"] = _wall_time(_summary_of(sub_dir))
    q_dir = out / "quantized"
    quantized = train(settings.quantization_stage(str(sub_dir), prior, distill), q_dir, quiet=quiet)
    times["quantization"] = _wall_time(quantized.summary)
    return certify(q_dir, out, delta=settings.delta, grid=grid, choices=choices, symbol_model=settings.symbol_model,
                   reported_bound=settings.reported_bound, data_dir=settings.train.data.data_dir, stage_times=times,
                   settings=settings.model_dump(), buffer_levels=settings.buffer_levels, original=source)


def _wall_time(summary: dict[str, Any]) -> float:
    value = summary.get("wall_time_s")
    return float(value) if isinstance(value, (int, float)) else 0.0


def _summary_of(run_dir: Path) -> dict[str, Any]:
    from genlab.train.run_dir import RunDir

    rd = RunDir(run_dir)
    return rd.read_json(rd.summary) if rd.summary.is_file() else {}
