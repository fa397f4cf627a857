"""Where dataset files are looked for: ``--data-dir``, ``$GENLAB_DATA``, ``../shared/data``, the user cache."""

from __future__ import annotations

import os
from pathlib import Path

from genlab.errors import DataError


def resolve_data_dir(data_dir: str | Path | None = None) -> tuple[Path, str]:
    """The data directory and how it was chosen, e.g. ``(Path("/data"), "GENLAB_DATA")``.

    Order: the explicit ``data_dir`` (``"data_dir argument (--data-dir)"``); ``$GENLAB_DATA``
    (``"GENLAB_DATA"``); the first existing of ``<cwd>/../shared/data`` and ``<repository>/../shared/data``
    (``"default ../shared/data"``); else the user cache directory, ``platformdirs.user_cache_dir("genlab")``
    (``"user cache dir ..."``). The second element is for messages saying where genlab looked and why.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser(), "data_dir argument (--data-dir)"
    env = os.environ.get("GENLAB_DATA")
    if env:
        return Path(env).expanduser(), "GENLAB_DATA"
    repo = Path(__file__).resolve().parents[3]
    for candidate in (Path.cwd() / ".." / "shared" / "data", repo / ".." / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve(), "default ../shared/data"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("genlab")), "user cache dir (GENLAB_DATA unset, no ../shared/data)"


def find_file(dataset: str, names: list[str], data_dir: str | Path | None, subdirs: list[str]) -> dict[str, Path]:
    """``{name: path}`` for every file in ``names``, all from the first of ``subdirs`` that holds them all.

    Raises:
        DataError: naming the first missing file, the folder(s) searched, how the data directory was chosen,
            and that ``GENLAB_DATA`` or ``--data-dir`` can point elsewhere.
    """
    root, how = resolve_data_dir(data_dir)
    for sub in subdirs:
        folder = root / sub
        if all((folder / n).is_file() for n in names):
            return {n: folder / n for n in names}
    # report the folder that came closest (most files present), the first one on a tie
    sub = max(subdirs, key=lambda s: (sum((root / s / n).is_file() for n in names), -subdirs.index(s)))
    folder = root / sub
    missing = next(n for n in names if not (folder / n).is_file())
    tried = [str(root / s) for s in subdirs if s != sub]
    others = f" (also tried {', '.join(tried)})" if tried else ""
    raise DataError(f"{dataset}: file {missing} not found in {folder}{others}; data directory chosen by {how}; "
                    f"set GENLAB_DATA or --data-dir to a directory holding {sub}/{missing}")
