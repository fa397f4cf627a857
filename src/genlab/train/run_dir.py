"""The run directory: where a training run keeps everything that defines and records it.

Layout::

    config.json            the TrainConfig (all settings, seed included)
    env.json               versions, device, host, data fingerprint, start time
    metrics.jsonl          one JSON record per evaluation (step, losses, accuracies, ...)
    checkpoint.safetensors last good state for resuming (model, optimizer, RNG, step)
    model.safetensors      the final model's state_dict
    summary.json           status and final figures

Every JSON file is written atomically (temporary file, then rename) so a kill
never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy
import torch

import genlab
from genlab.errors import ConfigError
from genlab.jsonio import jsonable


class RunDir:
    """Paths and small file operations of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    env = property(lambda self: self.path / "env.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    summary = property(lambda self: self.path / "summary.json")
    checkpoint = property(lambda self: self.path / "checkpoint.safetensors")
    model = property(lambda self: self.path / "model.safetensors")

    def create(self) -> None:
        """Create the directory (and parents)."""
        self.path.mkdir(parents=True, exist_ok=True)

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl (flushed and fsynced)."""
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(jsonable(record)) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        """All complete records of metrics.jsonl (a torn last line is ignored)."""
        if not self.metrics.exists():
            return []
        records = []
        for line in self.metrics.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return records

    def truncate_metrics(self, last_step: int) -> None:
        """Drop records after ``last_step`` (used on resume, so no step is logged twice)."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= last_step]
        tmp = self.metrics.with_name("metrics.jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        os.replace(tmp, self.metrics)

    def read_json(self, path: Path) -> Any:
        """Parse one JSON file of the run."""
        return json.loads(path.read_text(encoding="utf-8"))


def environment_info(seed: int, device: str) -> dict[str, Any]:
    """Versions, device, host and time: what a reader needs to reproduce the run."""
    info = {
        "genlab": genlab.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "seed": seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.startswith("cuda"):
        info["cuda_device"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def open_run_dir(out: str | Path, overwrite: bool) -> RunDir:
    """The run directory ``out``: refused if it is a file; with ``overwrite`` the files genlab wrote there are
    removed (only those: nothing genlab did not write is deleted)."""
    rd = RunDir(out)
    if rd.path.exists() and not rd.path.is_dir():
        raise ConfigError(f"--out {rd.path} exists and is not a directory; give a directory for the run")
    if overwrite and rd.path.exists():
        for p in (rd.config, rd.env, rd.metrics, rd.summary, rd.checkpoint, rd.model):
            p.unlink(missing_ok=True)
    return rd
