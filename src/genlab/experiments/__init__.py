"""Reproductions of the results genlab rests on; each writes the shared results format.

:data:`REPRODUCTIONS` maps a name to the module whose ``reproduce(out, quick, quiet)``
runs it; ``genlab reproduce NAME`` calls it.
"""

import importlib

from genlab.experiments.results import VERDICTS, ReproductionResult, read_results, write_results

REPRODUCTIONS = {
    "sharpening": "genlab.experiments.sharpening",
    "sgld-noise": "genlab.experiments.sgld_noise",
    "noise-timescales": "genlab.experiments.noise_timescales",
    "vl-eos": "genlab.experiments.vl_eos",
    "compression": "genlab.experiments.compression",
}


def reproduce(name: str, out, quick: bool = False, quiet: bool = False) -> ReproductionResult:
    """Run the reproduction ``name`` into the directory ``out``; returns its result (also in ``out/results.json``)."""
    from genlab.errors import ConfigError

    if name not in REPRODUCTIONS:
        raise ConfigError(f"unknown reproduction {name!r}; allowed: {', '.join(REPRODUCTIONS)}")
    return importlib.import_module(REPRODUCTIONS[name]).reproduce(out, quick=quick, quiet=quiet)


__all__ = ["VERDICTS", "ReproductionResult", "read_results", "write_results", "REPRODUCTIONS", "reproduce"]
