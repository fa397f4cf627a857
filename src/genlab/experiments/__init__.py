"""Reproductions of the results genlab rests on; each writes the shared results format."""

from genlab.experiments.results import VERDICTS, ReproductionResult, read_results, write_results

__all__ = ["VERDICTS", "ReproductionResult", "read_results", "write_results"]
