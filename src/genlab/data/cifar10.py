"""Reader for CIFAR-10's official binary version (no pickle).

Each of ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin`` is a
sequence of 3,073-byte records: one label byte, then 1,024 red, 1,024 green and
1,024 blue pixel bytes (row-major 32x32 planes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genlab.data.paths import find_file
from genlab.errors import DataError

RECORD = 1 + 3 * 32 * 32
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
SUBDIRS = ["cifar10", "cifar-10-batches-bin", "cifar10/cifar-10-batches-bin"]
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # per channel, of x/255 on the training set


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 from one binary batch file.

    Any non-zero multiple of 3,073 bytes is accepted (the official files hold 10,000 records).

    Raises:
        DataError: the file is unreadable, its size is not a positive multiple of 3,073, or a label exceeds 9.
    """
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if raw.size == 0 or raw.size % RECORD:
        raise DataError(f"corrupt CIFAR-10 file {path}: {raw.size} bytes is not a positive multiple of the "
                        f"{RECORD}-byte record")
    records = raw.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"corrupt CIFAR-10 file {path}: label {labels.max()} outside 0..9")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def read_cifar10(files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` from the six batch files."""
    train = [read_cifar_batch(files[n]) for n in TRAIN_FILES]
    xt, yt = read_cifar_batch(files[TEST_FILES[0]])
    return np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), xt, yt


def load_cifar10(data_dir=None) -> tuple:
    """``(x_train, y_train, x_test, y_test, info)``: float32 ``(N, 3, 32, 32)`` images, int64 labels 0..9.

    Looks for the six ``.bin`` files in ``<data_dir>/cifar10/``, ``<data_dir>/cifar-10-batches-bin/`` and
    ``<data_dir>/cifar10/cifar-10-batches-bin/``. Normalisation: ``x/255``, then per channel
    ``(x - MEAN) / STD`` with the usual published training statistics.

    Raises:
        DataError: a file is missing (naming where genlab looked) or corrupt (naming the file).
    """
    files = find_file("cifar10", TRAIN_FILES + TEST_FILES, data_dir, SUBDIRS)
    xtr, ytr, xte, yte = read_cifar10(files)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    norm = lambda a: (torch.from_numpy(np.ascontiguousarray(a)).float() / 255.0 - mean) / std  # noqa: E731
    info = {"normalisation": "x/255, then per channel (x - mean) / std (published training statistics)",
            "mean": list(MEAN), "std": list(STD), "files": [str(files[f]) for f in TRAIN_FILES + TEST_FILES]}
    return norm(xtr), torch.from_numpy(ytr), norm(xte), torch.from_numpy(yte), info
