"""MNIST and Fashion-MNIST from their official IDX gz files (big-endian header, then raw bytes).

Files, in ``<data_dir>/mnist/`` or ``<data_dir>/fashion-mnist/``: ``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``.
Images: magic 2051, then count, rows, cols (uint32); labels: magic 2049, then count.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from genlab.data.paths import find_file
from genlab.errors import DataError

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
ALL_FILES = [f for pair in FILES.values() for f in pair]
# Published training-set statistics of x/255: the constants every paper's code uses.
STATS = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}


def _read_gz(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
        raise DataError(f"corrupt file {path}: not a complete gzip file ({err})") from None


def read_idx_images(path: Path) -> np.ndarray:
    """Images ``(count, rows, cols)`` uint8 from an IDX3 gz file; validates magic and size."""
    raw = _read_gz(path)
    if len(raw) < 16:
        raise DataError(f"corrupt IDX file {path}: {len(raw)} bytes, shorter than the 16-byte header")
    magic, count, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != IMAGE_MAGIC:
        raise DataError(f"corrupt IDX file {path}: magic number {magic}, expected {IMAGE_MAGIC} for images")
    expected = 16 + count * rows * cols
    if len(raw) != expected:
        raise DataError(f"corrupt IDX file {path}: {len(raw)} bytes, header promises {expected} "
                        f"({count} images of {rows}x{cols})")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def read_idx_labels(path: Path) -> np.ndarray:
    """Labels ``(count,)`` uint8 from an IDX1 gz file; validates magic and size."""
    raw = _read_gz(path)
    if len(raw) < 8:
        raise DataError(f"corrupt IDX file {path}: {len(raw)} bytes, shorter than the 8-byte header")
    magic, count = struct.unpack(">II", raw[:8])
    if magic != LABEL_MAGIC:
        raise DataError(f"corrupt IDX file {path}: magic number {magic}, expected {LABEL_MAGIC} for labels")
    if len(raw) != 8 + count:
        raise DataError(f"corrupt IDX file {path}: {len(raw)} bytes, header promises {8 + count} ({count} labels)")
    return np.frombuffer(raw, dtype=np.uint8, offset=8)


def read_idx_split(files: dict[str, Path], split: str, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split (``train``/``test``), checked against each other."""
    img_name, lab_name = FILES[split]
    images, labels = read_idx_images(files[img_name]), read_idx_labels(files[lab_name])
    if len(images) != len(labels):
        raise DataError(f"{files[img_name]} holds {len(images)} images but {files[lab_name]} "
                        f"holds {len(labels)} labels")
    if len(labels) and labels.max() >= num_classes:
        raise DataError(f"corrupt IDX file {files[lab_name]}: label {labels.max()} outside 0..{num_classes - 1}")
    return images, labels.astype(np.int64)


def load_idx_dataset(name: str, data_dir=None, shape: tuple[int, int] = (28, 28)) -> tuple:
    """``(x_train, y_train, x_test, y_test, info)`` of ``mnist`` or ``fashion-mnist`` as tensors.

    Images are float32 ``(N, 1, 28, 28)``, normalised as ``(x/255 - mean) / std`` with the published
    training statistics (:data:`STATS`); labels int64 0..9. Files are read from ``<data_dir>/<name>/``.

    Raises:
        DataError: a file is missing (naming where genlab looked) or corrupt (naming the file).
    """
    files = find_file(name, ALL_FILES, data_dir, [name])
    mean, std = STATS[name]
    out = []
    for split in ("train", "test"):
        images, labels = read_idx_split(files, split)
        if images.shape[1:] != shape:
            raise DataError(f"{files[FILES[split][0]]} holds {images.shape[1]}x{images.shape[2]} images; "
                            f"{name} needs {shape[0]}x{shape[1]}")
        x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1).div_(255.0).sub_(mean).div_(std)
        out += [x, torch.from_numpy(labels)]
    info = {"normalisation": "x/255, then (x - mean) / std with the published training statistics",
            "mean": mean, "std": std, "files": [str(files[f]) for f in ALL_FILES]}
    return (*out, info)
