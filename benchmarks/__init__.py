"""genlab benchmarks: `python -m benchmarks` (or `make bench`) runs them all and records results."""
