"""Fetch a named dataset's files from its publishers, checked before a loader can see them, resumable.

A file is written to ``.<name>.part`` beside its final place, resumed there with an HTTP ``Range`` request after
an interruption (a dropped connection now, or a killed process on the next call), checked against its published
checksum (:mod:`genlab.data.sources`) and only then renamed into place: a loader never reads a partial or wrong
file. A file that fails its check is deleted (it is genlab's own ``.part``) and the next mirror is tried. One
lock per folder keeps two processes (sweep workers) from writing the same file. Files already present are used
as they are, never re-checked or replaced.

Downloads happen on first use by any command, unless ``GENLAB_NO_DOWNLOAD=1`` (the CLI's ``--no-download`` sets
it) forbids them; ``genlab data download NAME`` fetches ahead of time.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import socket
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from contextlib import contextmanager
from pathlib import Path

from genlab import __version__
from genlab.data.paths import download_root
from genlab.data.sources import SOURCES, DatasetSource, RemoteFile, mirrors
from genlab.errors import DataError

CHUNK = 1 << 20
TIMEOUT_S = 60.0        # per connection attempt and per read
RESUMES = 5             # interruptions tolerated per mirror before the next one is tried
_DROPPED = (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionError, TimeoutError,
            socket.timeout)


def downloads_allowed() -> bool:
    """False when ``$GENLAB_NO_DOWNLOAD`` is set to anything but ``""``/``0``/``false``/``no``."""
    return os.environ.get("GENLAB_NO_DOWNLOAD", "").strip().lower() in ("", "0", "false", "no")


def md5_of(path: Path, decompress: bool = False) -> str:
    """The MD5 of a file, or of its gzip-decompressed content (``decompress``)."""
    digest = hashlib.md5()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path, remote: RemoteFile) -> str | None:
    """``None`` if ``path`` is the published file (its MD5, or for a gz file its decompressed content's MD5,
    matches); otherwise why not, in a few words."""
    got = md5_of(path)
    if got == remote.md5:
        return None
    if remote.content_md5 is not None:
        try:
            if md5_of(path, decompress=True) == remote.content_md5:
                return None
        except (gzip.BadGzipFile, EOFError, zlib.error, OSError):
            pass
    return f"checksum mismatch (MD5 {got}, published {remote.md5})"


@contextmanager
def _folder_lock(folder: Path):
    """An exclusive lock on ``folder`` while its files are fetched (POSIX ``flock``; none elsewhere)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the .part/rename protocol still keeps loaders safe
        yield
        return
    with open(folder / ".genlab-download.lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _progress(name: str, total: int | None, initial: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                disable=not show, file=sys.stderr, leave=False, dynamic_ncols=True)


def _fetch_once(url: str, part: Path, show: bool) -> None:
    """Fetch ``url`` into ``part``, continuing from its current size when the server honours ``Range``.

    Raises an ``_DROPPED`` exception when the connection drops (the bytes so far stay in ``part``), and
    ``urllib.error.URLError``/``HTTPError`` when the server cannot be reached or refuses.
    """
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"genlab/{__version__}"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        resumed = offset and response.status == 206 and \
            response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")
        if not resumed:
            offset = 0  # the server sent the whole file (it ignores Range, or the part was not a prefix)
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with open(part, "ab" if resumed else "wb") as out, \
                _progress(part.name[1:-5], None if expected is None else offset + expected, offset, show) as bar:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and received < expected:
            raise http.client.IncompleteRead(b"", expected - received)


def download_file(urls: list[str], dest: Path, remote: RemoteFile, *, show: bool = False) -> str:
    """Download one file to ``dest`` from the first of ``urls`` that serves the published file; returns that URL.

    Raises:
        DataError: every URL failed (each one's reason in the message); nothing is left at ``dest``.
    """
    part = dest.parent / f".{dest.name}.part"
    reasons = []
    for url in urls:
        restarted = False
        drops = 0
        while True:
            started_from = part.stat().st_size if part.exists() else 0
            try:
                _fetch_once(url, part, show)
            except urllib.error.HTTPError as err:
                if err.code == 416 and started_from:  # nothing after the part's end: it may be whole already
                    pass
                else:
                    reasons.append(f"{url}: HTTP {err.code} {err.reason}")
                    break
            except _DROPPED as err:
                drops += 1
                if drops <= RESUMES:
                    continue  # resume from what arrived
                reasons.append(f"{url}: connection dropped {drops} times ({type(err).__name__})")
                break
            except (urllib.error.URLError, http.client.HTTPException) as err:
                # unreachable, refused, a bad reply; a local OSError (full disk, no permission) is not caught
                reason = getattr(err, "reason", None) or f"{type(err).__name__} {err}"
                reasons.append(f"{url}: {' '.join(str(reason).split())}")
                break
            problem = check_file(part, remote)
            if problem is None:
                os.replace(part, dest)
                return url
            part.unlink()  # genlab's own partial file, and wrong: never left where it could be resumed
            if started_from and not restarted:  # a stale or foreign partial file: once more from the start
                restarted = True
                continue
            reasons.append(f"{url}: {problem}")
            break
    raise DataError(f"cannot download {dest.name} ({'; '.join(reasons) or 'no mirror configured'})")


def _extract(archive: Path, folder: Path, members: dict[str, str]) -> None:
    """Extract the ``members`` of a verified tar archive into ``folder`` (each via a ``.part`` and a rename);
    every other member, and any member that is not a regular file, is ignored."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            found = set()
            for member in tar:
                name = members.get(member.name)
                if name is None or not member.isfile():
                    continue
                part = folder / f".{name}.part"
                with tar.extractfile(member) as src, open(part, "wb") as out:
                    for block in iter(lambda: src.read(CHUNK), b""):
                        out.write(block)
                os.replace(part, folder / name)
                found.add(member.name)
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise DataError(f"corrupt archive {archive}: {err}") from None
    missing = sorted(set(members) - found)
    if missing:
        raise DataError(f"archive {archive} lacks {', '.join(missing)}")


def by_hand(source: DatasetSource, folder: Path) -> str:
    """What to fetch and where to put it when genlab cannot, for messages."""
    files = ", ".join(f.name for f in source.files)
    unpack = f" and unpack its {source.folder}/ folder there" if source.members else ""
    where = folder.parent if source.members else folder
    it = "them" if len(source.files) > 1 else "it"
    return (f"download {files} from {source.mirrors[0]} (or a mirror) and put {it} in {where}{unpack}, "
            f"or set GENLAB_DATA / --data-dir to a directory holding {source.folder}/")


def fetch_dataset(name: str, data_dir: str | Path | None = None, *, mirror: list[str] | None = None,
                  progress: bool | None = None, quiet: bool = False) -> Path:
    """Download the named dataset's missing files into the download directory; returns the folder holding them.

    The download directory is ``data_dir``, else ``$GENLAB_DATA``, else the user cache
    (:func:`genlab.data.paths.download_root`). Files already there are kept as they are.

    Args:
        name: ``mnist``, ``fashion-mnist`` or ``cifar10`` (the keys of :data:`genlab.data.sources.SOURCES`).
        mirror: base URLs to use instead of the built-in ones (and of ``$GENLAB_DATA_MIRROR``).
        progress: show a progress bar (default: when stderr is a terminal).
        quiet: no line per file fetched.

    Raises:
        DataError: not a downloadable dataset, or a file could not be fetched from any mirror (the message names
            each mirror's reason, the files and where to put them by hand).
    """
    if name not in SOURCES:
        raise DataError(f"dataset: {name!r} cannot be downloaded; downloadable: {', '.join(SOURCES)}")
    source = SOURCES[name]
    root, _ = download_root(data_dir)
    folder = root / source.folder
    show = sys.stderr.isatty() if progress is None else progress
    urls = mirrors(source, mirror)
    with _folder_lock(folder):
        if all((folder / n).is_file() for n in source.loader_files):
            return folder
        for remote in source.files:
            dest = (root if source.members else folder) / remote.name
            # a file present is kept as it is: the user's own copy, or one genlab verified and moved into place
            # (for an archive: before an interrupted extraction, which is simply redone)
            if not dest.is_file():
                try:
                    used = download_file([u + remote.name for u in urls], dest, remote, show=show)
                except DataError as err:
                    raise DataError(f"{name}: {err}; {by_hand(source, folder)}") from None
                if not quiet:
                    print(f"genlab: fetched {dest} from {used} (checksum verified)", file=sys.stderr)
            if source.members:
                _extract(dest, folder, source.members)
                dest.unlink()  # genlab downloaded it; the extracted members are what the loader reads
    return folder
