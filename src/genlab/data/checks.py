"""Validation of user-given values (arguments and dataset options), each failure one clear :class:`DataError`."""

from __future__ import annotations

import math
import numbers
from typing import Any

from genlab.errors import DataError


def option(dataset: str, name: str) -> str:
    """How messages name a dataset option: ``dataset options for D: option K``."""
    return f"dataset options for {dataset}: option {name}"


def check_int(value: Any, what: str, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` as an ``int`` in ``minimum..maximum``; integral floats (``1000.0``) are accepted.

    Raises:
        DataError: naming ``what``, the allowed range and the value given.
    """
    ok = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not ok or value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise DataError(f"{what} must be an integer {allowed} (got {value!r})")
    return int(value)


def check_real(value: Any, what: str, minimum: float = 0.0, maximum: float | None = None) -> float:
    """``value`` as a finite ``float`` in ``[minimum, maximum]``.

    Raises:
        DataError: naming ``what``, the allowed range and the value given.
    """
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or value < minimum or (maximum is not None and value > maximum)):
        allowed = f">= {minimum:g}" if maximum is None else f"in [{minimum:g}, {maximum:g}]"
        raise DataError(f"{what} must be {allowed} (a finite number; got {value!r})")
    return float(value)


def check_option_names(dataset: str, options: dict[str, Any], allowed: dict[str, Any]) -> None:
    """Raise :class:`DataError` for the first option name ``dataset`` does not have, listing those it has."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        names = ", ".join(allowed) or "none"
        defaults = f" (defaults: {', '.join(f'{k}={v}' for k, v in allowed.items())})" if allowed else ""
        raise DataError(f"dataset option {unknown[0]!r} is not an option of {dataset}; allowed: {names}{defaults}")
