"""Where dataset files are looked for: ``--data-dir``, ``$GENLAB_DATA``, ``../shared/data``, the user cache."""

from __future__ import annotations

import os
from pathlib import Path

from genlab.errors import DataError


def resolve_data_dir(data_dir: str | Path | None = None) -> tuple[Path, str]:
    """The data directory and how it was chosen (for error messages).

    Order: the explicit ``data_dir``; ``$GENLAB_DATA``; the first existing of
    ``./../shared/data`` and ``<repository>/../shared/data``; else the user cache
    directory (``platformdirs.user_cache_dir("genlab")``).
    """
    if data_dir is not None:
        return Path(data_dir), "--data-dir"
    env = os.environ.get("GENLAB_DATA")
    if env:
        return Path(env), "GENLAB_DATA"
    repo = Path(__file__).resolve().parents[3]
    for candidate in (Path.cwd() / ".." / "shared" / "data", repo / ".." / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve(), "default ../shared/data"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("genlab")), "user cache dir (GENLAB_DATA unset, no ../shared/data)"


def find_file(dataset: str, names: list[str], data_dir: str | Path | None, subdirs: list[str]) -> dict[str, Path]:
    """Locate every file in ``names`` in one of ``subdirs`` of the data directory, or raise :class:`DataError`."""
    root, how = resolve_data_dir(data_dir)
    for sub in subdirs:
        folder = root / sub
        if all((folder / n).is_file() for n in names):
            return {n: folder / n for n in names}
    folder = root / subdirs[0]
    missing = next(n for n in names if not (folder / n).is_file())
    others = "" if len(subdirs) == 1 else f" (also tried {', '.join(str(root / s) for s in subdirs[1:])})"
    raise DataError(f"{dataset}: file {missing} not found in {folder}{others}; data directory chosen by {how}; "
                    f"set GENLAB_DATA or --data-dir to a directory holding {subdirs[0]}/{missing}")
