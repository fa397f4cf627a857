"""Reader for CIFAR-10's official binary version (no pickle).

Each of ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin`` is a
sequence of 3,073-byte records: one label byte, then 1,024 red, 1,024 green and
1,024 blue pixel bytes (row-major 32x32 planes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genlab.errors import DataError

RECORD = 1 + 3 * 32 * 32
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
SUBDIRS = ["cifar10", "cifar-10-batches-bin", "cifar10/cifar-10-batches-bin"]


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 from one binary batch file."""
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
