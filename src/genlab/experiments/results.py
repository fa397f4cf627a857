"""The one output format every reproduction (``genlab reproduce NAME``) shares.

``OUT/results.json`` holds:

* ``claim``: the paper's claim, one sentence;
* ``verdict``: ``held``, ``did not hold`` or ``inconclusive``;
* ``metrics``: the numbers the verdict rests on (JSON object);
* ``figures``: paths of the figures, relative to ``OUT`` (all under ``OUT/figures/``, PNG);

plus ``name`` and any ``details`` (settings, seeds, wall time). The figures
themselves are ``OUT/figures/*.png``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genlab.errors import GenlabError
from genlab.jsonio import write_json_atomic

VERDICTS = ("held", "did not hold", "inconclusive")


@dataclass
class ReproductionResult:
    """A reproduction's outcome: claim, verdict, the numbers behind it and its figures."""

    name: str
    claim: str
    verdict: str
    metrics: dict[str, Any]
    figures: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def validate(self, out: Path | None = None) -> None:
        """Raise ``ValueError`` unless the result has the shared format (and its figures exist under ``out``)."""
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.verdict!r}")
        if not self.claim.strip() or "\n" in self.claim.strip():
            raise ValueError("claim must be one non-empty sentence on one line")
        if not isinstance(self.metrics, dict) or not self.metrics:
            raise ValueError("metrics must be a non-empty object of the numbers the verdict rests on")
        json.dumps(self.metrics, allow_nan=True)
        for fig in self.figures:
            p = Path(fig)
            if p.is_absolute() or p.parts[:1] != ("figures",) or p.suffix != ".png":
                raise ValueError(f"figure {fig!r} must be a relative path figures/NAME.png")
            if out is not None and not (out / p).is_file():
                raise ValueError(f"figure {fig!r} does not exist under {out}")


def choose_setting(settings: dict[str, Any], quick: bool, setting: Any = None) -> tuple[str, Any]:
    """``(name, setting)``: a caller's own ``setting`` ("custom", as tests pass), else ``settings["quick"]`` or
    ``settings["full"]``."""
    if setting is not None:
        return "custom", setting
    name = "quick" if quick else "full"
    return name, settings[name]


def write_results(out: str | Path, result: ReproductionResult) -> Path:
    """Validate ``result`` and write ``OUT/results.json``; returns its path."""
    out = Path(out)
    result.validate(out)
    path = out / "results.json"
    write_json_atomic(path, asdict(result))
    return path


def read_results(out: str | Path) -> ReproductionResult:
    """Read and validate ``OUT/results.json``."""
    path = Path(out) / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        result = ReproductionResult(**data)
        result.validate(Path(out))
    except (OSError, json.JSONDecodeError, TypeError, ValueError) as err:
        raise GenlabError(f"{path} is not a valid reproduction result ({err})") from None
    result.metrics = {k: (math.nan if v is None else v) for k, v in result.metrics.items()}
    return result
