"""Errors a user can cause, each carrying one clear line of text.

The CLI prints ``str(err)`` of any :class:`GenlabError` on one line, exits with
``err.exit_code`` and shows no traceback. Library code raises these for bad
input (names, values, files); programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class GenlabError(Exception):
    """Base class: a user-facing error whose message is one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(GenlabError, ValueError):
    """A setting is unknown, has a bad value, or a config file is unreadable."""


class DataError(GenlabError):
    """A dataset file is missing or corrupt, or a dataset option is invalid."""


class CheckpointError(GenlabError):
    """A checkpoint or run directory is missing, corrupt, or from other settings."""


class PartialFailure(GenlabError):
    """Some of several independent jobs (runs of a sweep, reproductions) failed; the others' results were kept."""

    exit_code = 1


def error_line(err: BaseException) -> str:
    """``"TypeName: message"`` of an unexpected exception on one line (for tables and reports)."""
    return " ".join(f"{type(err).__name__}: {err}".split())


class DivergenceError(GenlabError):
    """Training produced a non-finite loss; the last good checkpoint was kept."""

    exit_code = 1

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step
