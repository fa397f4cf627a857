"""Where dataset files are looked for (``--data-dir``, ``$GENLAB_DATA``, ``../shared/data``, the user cache) and
where a download puts them (``--data-dir``, ``$GENLAB_DATA``, else the user cache)."""

from __future__ import annotations

import os
from pathlib import Path

from genlab.errors import DataError

CACHE_HOW = "user cache dir (GENLAB_DATA unset)"


def _chosen(data_dir: str | Path | None) -> tuple[Path, str] | None:
    """The directory the user chose (``data_dir``, else ``$GENLAB_DATA``) with how, or None."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "data_dir argument (--data-dir)"
    env = os.environ.get("GENLAB_DATA")
    if env:
        return Path(env).expanduser(), "GENLAB_DATA"
    return None


def _user_cache() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("genlab"))


def search_roots(data_dir: str | Path | None = None) -> list[tuple[Path, str]]:
    """The data directories searched, in order, each with how it was chosen.

    The explicit ``data_dir`` alone, else ``$GENLAB_DATA`` alone; else the existing ones of
    ``<cwd>/../shared/data`` and ``<repository>/../shared/data`` (``"default ../shared/data"``), then the user
    cache directory ``platformdirs.user_cache_dir("genlab")``, where downloads go.
    """
    chosen = _chosen(data_dir)
    if chosen is not None:
        return [chosen]
    repo = Path(__file__).resolve().parents[3]
    roots: list[tuple[Path, str]] = []
    for candidate in (Path.cwd() / ".." / "shared" / "data", repo / ".." / "shared" / "data"):
        if candidate.is_dir() and candidate.resolve() not in [r for r, _ in roots]:
            roots.append((candidate.resolve(), "default ../shared/data"))
    return roots + [(_user_cache(), CACHE_HOW)]


def resolve_data_dir(data_dir: str | Path | None = None) -> tuple[Path, str]:
    """The first data directory searched and how it was chosen, e.g. ``(Path("/data"), "GENLAB_DATA")``
    (see :func:`search_roots` for the whole order)."""
    return search_roots(data_dir)[0]


def download_root(data_dir: str | Path | None = None) -> tuple[Path, str]:
    """Where downloaded files go: ``data_dir``, else ``$GENLAB_DATA``, else the user cache directory
    (never ``../shared/data``, which holds files genlab did not write)."""
    return _chosen(data_dir) or (_user_cache(), CACHE_HOW)


def locate_folder(names: list[str], roots: list[tuple[Path, str]], subdirs: list[str]) -> tuple[Path, str] | None:
    """The first ``root/sub`` (roots in order, then ``subdirs``) holding every file in ``names``, with how its
    root was chosen; None when none does."""
    for root, how in roots:
        for sub in subdirs:
            if all((root / sub / n).is_file() for n in names):
                return root / sub, how
    return None


def find_file(dataset: str, names: list[str], data_dir: str | Path | None, subdirs: list[str]) -> dict[str, Path]:
    """``{name: path}`` for every file in ``names``, all from one folder: the first of ``subdirs`` of the first
    data directory (:func:`search_roots`) that holds them all. A dataset genlab can download
    (:mod:`genlab.data.sources`) is fetched when missing, unless downloads are forbidden.

    Raises:
        DataError: naming the first missing file, the folder(s) searched, how the data directory was chosen,
            that ``GENLAB_DATA`` or ``--data-dir`` can point elsewhere, and for a downloadable dataset how to
            fetch it (or why fetching failed).
    """
    from genlab.data.download import downloads_allowed, fetch_dataset
    from genlab.data.sources import SOURCES

    roots = search_roots(data_dir)
    found = locate_folder(names, roots, subdirs)
    hint = ""
    if found is None and dataset in SOURCES:
        if downloads_allowed():
            fetch_dataset(dataset, data_dir)  # raises a DataError naming each mirror's reason and the files
            found = locate_folder(names, roots, subdirs)
        else:
            hint = (f"; downloads are off (--no-download / GENLAB_NO_DOWNLOAD): allow them, or run "
                    f"'genlab data download {dataset}' where there is a network")
    if found is not None:
        return {n: found[0] / n for n in names}
    root, how = roots[0]
    # report the folder that came closest (most files present), the first one on a tie
    sub = max(subdirs, key=lambda s: (sum((root / s / n).is_file() for n in names), -subdirs.index(s)))
    folder = root / sub
    missing = next(n for n in names if not (folder / n).is_file())
    tried = [str(r / s) for r, _ in roots for s in subdirs if r / s != folder]
    others = f" (also tried {', '.join(tried)})" if tried else ""
    raise DataError(f"{dataset}: file {missing} not found in {folder}{others}; data directory chosen by {how}; "
                    f"set GENLAB_DATA or --data-dir to a directory holding {sub}/{missing}{hint}")
