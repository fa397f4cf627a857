"""The run directory: where a training run keeps everything that defines and records it.

Layout::

    config.json            the TrainConfig (all settings, seed included)
    env.json               versions, device, host, data fingerprint, start time
    metrics.jsonl          one JSON record per evaluation (step, losses, accuracies, ...)
    checkpoint.safetensors last good state for resuming (model, optimizer, RNG, step)
    model.safetensors      the final model's state_dict
    summary.json           status and final figures
    .genlab.lock           present while a process holds the run (see RunLock)

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy
import torch

import genlab
from genlab.errors import CheckpointError, ConfigError
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

    damaged_metrics = property(lambda self: self.path / "metrics.damaged.jsonl")

    def _metrics_lines(self) -> tuple[list[dict[str, Any]], list[bytes]]:
        """(records, damaged lines) of metrics.jsonl; a line is damaged if it is not UTF-8 JSON of an object
        with an integer ``step``. A torn last line (a kill mid-write leaves no newline) is dropped silently."""
        if not self.metrics.exists():
            return [], []
        raw = self.metrics.read_bytes()
        lines = raw.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with a newline
        records, damaged = [], []
        for line in lines:
            try:
                record = json.loads(line.decode("utf-8"))
                if not (isinstance(record, dict) and isinstance(record.get("step"), int)):
                    raise ValueError("not a metrics record")
                records.append(record)
            except (UnicodeDecodeError, ValueError):
                if line.strip():
                    damaged.append(line)
        del torn
        return records, damaged

    def read_metrics(self) -> list[dict[str, Any]]:
        """All intact records of metrics.jsonl, in order (damaged lines skipped, see :meth:`truncate_metrics`)."""
        return self._metrics_lines()[0]

    def truncate_metrics(self, last_step: int) -> None:
        """Drop records after ``last_step`` (used on resume, so no step is logged twice). Damaged lines are
        never deleted: they are moved to metrics.damaged.jsonl, and the move is reported."""
        records, damaged = self._metrics_lines()
        if damaged:
            with open(self.damaged_metrics, "ab") as f:
                f.write(b"".join(line + b"\n" for line in damaged))
            print(f"{self.metrics}: {len(damaged)} damaged line(s) moved to {self.damaged_metrics}", file=sys.stderr)
        kept = [r for r in records if r["step"] <= last_step]
        tmp = self.metrics.with_name("metrics.jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        os.replace(tmp, self.metrics)

    def read_json(self, path: Path) -> dict[str, Any]:
        """Parse one JSON file of the run (an object); a damaged one is named in one :class:`CheckpointError`."""
        try:
            value = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{path} not found") from None
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise CheckpointError(f"{path} is damaged ({' '.join(str(err).split())[:120]}); genlab wrote it "
                                  f"whole, so something else changed it -- restore it, or --overwrite the run"
                                  ) from None
        if not isinstance(value, dict):
            raise CheckpointError(f"{path} is damaged (not a JSON object); restore it, or --overwrite the run")
        return value

    def own_files(self) -> tuple[Path, ...]:
        """Every file of a run genlab writes here (the only files ``--overwrite`` removes)."""
        return (self.config, self.env, self.metrics, self.summary, self.checkpoint, self.model, self.damaged_metrics)

    def genlab_files(self) -> list[Path]:
        """The files of a run genlab writes here that exist now."""
        return [p for p in self.own_files() if p.exists()]


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


class RunLock:
    """One process per run directory: an advisory ``flock`` on ``RUN/.genlab.lock``.

    The operating system releases the lock when its process exits, however it exits (SIGKILL included), so a
    lock is never stale: a new process takes it over. The file names the holder, for the message of the
    process that finds it taken. Released on exit from the ``with`` block; the file is removed, and so is the
    directory if this lock created it and nothing else was written there.
    """

    NAME = ".genlab.lock"

    def __init__(self, rd: RunDir):
        self.rd, self.fd, self.created = rd, None, False

    @property
    def file(self) -> Path:
        return self.rd.path / self.NAME

    def acquire(self) -> None:
        import fcntl

        self.created = not self.rd.path.exists()
        self.rd.create()
        while True:
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 500).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                raise CheckpointError(f"{self.rd.path} is in use by {holder}; wait for it to finish or give "
                                      f"another --out") from None
            try:  # the previous holder may have removed the file between our open and our lock: lock anew
                same = os.fstat(fd).st_ino == os.stat(self.file).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} ({' '.join(sys.argv[:2])})".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        self.file.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None
        if self.created:
            try:
                self.rd.path.rmdir()  # only if empty: nothing was written
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def open_run_dir(out: str | Path, overwrite: bool) -> Iterator[RunDir]:
    """The run directory ``out``, held by this process for the ``with`` block (:class:`RunLock`): refused if
    it is a file or another process holds it; with ``overwrite`` the files genlab wrote there are removed (only
    those: nothing genlab did not write is deleted)."""
    rd = RunDir(out)
    if str(out).strip() == "":
        raise ConfigError("--out is empty; give a directory for the run")
    if rd.path.exists() and not rd.path.is_dir():
        raise ConfigError(f"--out {rd.path} exists and is not a directory; give a directory for the run")
    with RunLock(rd):
        found = rd.genlab_files()
        if overwrite:
            for p in rd.own_files():
                p.unlink(missing_ok=True)
                p.with_name(p.name + ".tmp").unlink(missing_ok=True)  # a write a kill interrupted
        elif found and not rd.config.is_file():
            names = ", ".join(p.name for p in found)
            raise CheckpointError(f"{rd.path} holds a run's files ({names}) but no config.json, so they cannot be "
                                  f"checked against these settings; restore config.json, or --overwrite to discard "
                                  f"them")
        yield rd
