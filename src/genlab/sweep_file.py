"""The sweep file: its tables (``[sweep]``, ``[base]``, ``[grid]``, ``[[runs]]``; the format is in
:mod:`genlab.sweep`'s documentation), their checks, and the runs they expand to.

Every run's settings are validated as a :class:`~genlab.config.TrainConfig` when the file is read, before
anything runs; a run's name (its directory) is made from the settings that vary, e.g. ``lr=0.05_seed=0``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.config import TrainConfig, flatten_settings, read_config_file, validate_config
from genlab.errors import ConfigError

SECTIONS = ("sweep", "base", "grid", "runs")
SWEEP_KEYS = ("name", "out", "jobs", "cpus_per_run", "gpus_per_run")


@dataclass
class SweepRun:
    """One run of a sweep: its name (its directory under the sweep's output) and its full settings."""

    name: str
    settings: dict[str, Any]
    varying: dict[str, Any]


@dataclass
class Sweep:
    """A parsed sweep file: its options and the expanded list of runs."""

    name: str
    runs: list[SweepRun]
    out: str | None = None
    jobs: int | None = None
    cpus_per_run: float | None = None
    gpus_per_run: float = 0


def _name_part(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":")) if isinstance(value, (dict, list)) else str(value)
    text = re.sub(r"[^A-Za-z0-9.+-]+", "_", text) or "_"
    return text.replace(".", "_") if set(text) == {"."} else text  # "." and ".." would leave the sweep directory


def run_name(varying: dict[str, Any]) -> str:
    """Directory name of a run from the settings that vary across the sweep, e.g. ``lr=0.05_seed=0``."""
    if not varying:
        return "run"
    name = "_".join(f"{k}={_name_part(v)}" for k, v in varying.items())
    if len(name) > 80:  # long names (nested options): a readable prefix and a hash of the exact settings
        digest = hashlib.sha1(json.dumps(varying, sort_keys=True).encode()).hexdigest()[:10]
        name = name[:60].rstrip("_-=") + "_" + digest
    return name


def parse_sweep(data: dict[str, Any], source: str = "sweep file") -> Sweep:
    """Expand a sweep table (the parsed TOML) into its runs; one clear error for anything malformed.

    Every run's settings are validated as a :class:`~genlab.config.TrainConfig` here, before anything runs.
    """
    unknown = [k for k in data if k not in SECTIONS]
    if unknown:
        raise ConfigError(f"{source}: unknown section {unknown[0]!r}; allowed: {', '.join(SECTIONS)}")
    opts = data.get("sweep", {})
    base = data.get("base", {})
    grid = data.get("grid", {})
    entries = data.get("runs", [{}])
    for section, value, kind in (("sweep", opts, dict), ("base", base, dict), ("grid", grid, dict),
                                 ("runs", entries, list)):
        if not isinstance(value, kind):
            what = "a table" if kind is dict else "an array of tables ([[runs]])"
            raise ConfigError(f"{source}: [{section}] must be {what}")
    bad = [k for k in opts if k not in SWEEP_KEYS]
    if bad:
        raise ConfigError(f"{source}: unknown [sweep] key {bad[0]!r}; allowed: {', '.join(SWEEP_KEYS)}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: [grid] {key} must be a non-empty list of values (got {values!r})")
    if not entries or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{source}: [[runs]] entries must be tables of settings")
    # the settings that vary: grid keys, and keys whose value differs between [[runs]] entries
    entry_keys = sorted({k for e in entries for k in e if k != "name"})
    varying_entry_keys = [k for k in entry_keys if len({json.dumps(e.get(k, base.get(k)), sort_keys=True)
                                                         for e in entries}) > 1]
    runs: list[SweepRun] = []
    # flat spellings merged (a [base.optimizer] table and a grid over optimizer meet as one key)
    flat_base = flatten_settings(base)
    for entry in entries:
        flat_entry = flatten_settings({k: v for k, v in entry.items() if k != "name"})
        for point in itertools.product(*grid.values()):
            settings = {**flat_base, **flat_entry, **dict(zip(grid, point))}
            varying = {k: settings.get(k) for k in varying_entry_keys if k not in grid}
            varying.update(dict(zip(grid, point)))
            if "name" in entry:  # a named entry: its name, and the grid point when there is a grid
                name = _name_part(entry["name"]) + (f"_{run_name(dict(zip(grid, point)))}" if grid else "")
            else:
                name = run_name(varying)
            try:
                validate_config(TrainConfig, settings)
            except ConfigError as err:
                raise ConfigError(f"{source}: run {name}: {err}") from None
            runs.append(SweepRun(name=name, settings=settings, varying=varying))
    dup = next((n for n, count in Counter(r.name for r in runs).items() if count > 1), None)
    if dup is not None:
        raise ConfigError(f"{source}: two runs are both named {dup!r} (same varying settings); give each [[runs]] "
                          f"entry a distinct name = \"...\"")
    jobs = opts.get("jobs")
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise ConfigError(f"{source}: [sweep] jobs must be an integer >= 1 (got {jobs!r})")
    for key in ("cpus_per_run", "gpus_per_run"):
        v = opts.get(key, 0 if key == "gpus_per_run" else 1)
        if not isinstance(v, (int, float)) or v < 0 or (key == "cpus_per_run" and v <= 0):
            raise ConfigError(f"{source}: [sweep] {key} must be a number {'>' if key == 'cpus_per_run' else '>='} 0 "
                              f"(got {v!r})")
    return Sweep(name=str(opts.get("name", "sweep")), runs=runs, out=opts.get("out"), jobs=jobs,
                 cpus_per_run=opts.get("cpus_per_run"), gpus_per_run=opts.get("gpus_per_run", 0))


def read_sweep(path: str | Path) -> Sweep:
    """Read and expand a sweep file (TOML, or JSON with the same tables)."""
    path = Path(path)
    data = read_config_file(path)
    sweep = parse_sweep(data, source=f"sweep file {path}")
    if "name" not in data.get("sweep", {}):  # default name: the file's stem
        sweep.name = path.stem
    return sweep
