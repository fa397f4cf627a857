"""The named datasets: what each is, its sizes and options, and how it is read or generated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from genlab.data import cifar10, idx, mnist1d, synthetic
from genlab.data.paths import find_file, resolve_data_dir

# Published training-set statistics (x/255): the constants every paper's code uses.
IDX_STATS = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class DatasetSpec:
    """One named dataset: sizes, task, options (with defaults) and its reader."""

    name: str
    description: str
    task: str                          # "classification" | "regression"
    n_train: int
    n_test: int
    input_shape: tuple[int, ...]
    output_dim: int
    files: list[str] = field(default_factory=list)   # files it needs, relative to the data directory
    options: dict[str, Any] = field(default_factory=dict)
    read: Callable[..., tuple] = field(default=None, repr=False)

    @property
    def num_classes(self) -> int | None:
        return self.output_dim if self.task == "classification" else None

    @property
    def default_loss(self) -> str:
        return "ce" if self.task == "classification" else "mse"


def _t(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())  # frombuffer views are read-only


def _read_mnist1d(data_dir, seed=42, num_samples=5000):
    xtr, ytr, xte, yte = mnist1d.generate(int(seed), int(num_samples))
    return (_t(xtr).float(), _t(ytr), _t(xte).float(), _t(yte),
            {"normalisation": "global standardisation of the generated signals (reference procedure)",
             "generator_seed": seed})


def _read_digits(data_dir):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float().unsqueeze(1) / 16.0
    y = torch.from_numpy(d.target).long()
    xtr, xte = x[:1437], x[1437:]
    mean, std = float(xtr.mean()), float(xtr.std())
    return ((xtr - mean) / std, y[:1437], (xte - mean) / std, y[1437:],
            {"normalisation": f"x/16, then (x - {mean:.4f}) / {std:.4f} (training mean/std)",
             "split": "first 1437 / last 360 (writer-ordered)"})


def _idx_reader(name):
    def read(data_dir):
        files = find_file(name, [f for pair in idx.FILES.values() for f in pair], data_dir, [name])
        mean, std = IDX_STATS[name]
        out = []
        for split in ("train", "test"):
            images, labels = idx.read_idx_split(files, split)
            x = (_t(images).float().unsqueeze(1) / 255.0 - mean) / std
            out += [x, _t(labels)]
        return (*out, {"normalisation": f"x/255, then (x - {mean}) / {std} (published training statistics)",
                       "files": sorted(str(p) for p in files.values())})
    return read


def _read_cifar10(data_dir):
    names = cifar10.TRAIN_FILES + cifar10.TEST_FILES
    files = find_file("cifar10", names, data_dir, cifar10.SUBDIRS)
    xtr, ytr, xte, yte = cifar10.read_cifar10(files)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    norm = lambda a: (_t(a).float() / 255.0 - mean) / std  # noqa: E731
    return (norm(xtr), _t(ytr), norm(xte), _t(yte),
            {"normalisation": f"x/255, then per-channel (x - {CIFAR_MEAN}) / {CIFAR_STD}",
             "files": sorted(str(p) for p in files.values())})


def _read_teacher_student(data_dir, **opts):
    *tensors, teacher = synthetic.teacher_student(**opts)
    return (*tensors, {"normalisation": "none (x ~ N(0, I))", "teacher": "tanh one-hidden-layer"})


def _read_sparse(data_dir, **opts):
    *tensors, w = synthetic.sparse_regression(**opts)
    return (*tensors, {"normalisation": "none (x ~ N(0, I))", "support": torch.nonzero(w).flatten().tolist()})


IDX_FILES = [f for pair in idx.FILES.values() for f in pair]

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec("mnist1d", "MNIST-1D (Greydanus 2020), generated procedurally", "classification", 4000, 1000,
                (40,), 10, options={"seed": 42, "num_samples": 5000}, read=_read_mnist1d),
    DatasetSpec("digits", "scikit-learn's bundled 8x8 handwritten digits", "classification", 1437, 360,
                (1, 8, 8), 10, read=_read_digits),
    DatasetSpec("mnist", "MNIST from the official IDX gz files", "classification", 60000, 10000, (1, 28, 28), 10,
                files=[f"mnist/{f}" for f in IDX_FILES], read=_idx_reader("mnist")),
    DatasetSpec("fashion-mnist", "Fashion-MNIST from the official IDX gz files", "classification", 60000, 10000,
                (1, 28, 28), 10, files=[f"fashion-mnist/{f}" for f in IDX_FILES], read=_idx_reader("fashion-mnist")),
    DatasetSpec("cifar10", "CIFAR-10 from the official binary batch files", "classification", 50000, 10000,
                (3, 32, 32), 10, files=[f"cifar10/{f}" for f in cifar10.TRAIN_FILES + cifar10.TEST_FILES],
                read=_read_cifar10),
    DatasetSpec("teacher-student", "x ~ N(0, I), y = random tanh teacher(x) + noise", "regression", 1000, 1000,
                (20,), 1, options={"input_dim": 20, "n_train": 1000, "n_test": 1000, "teacher_width": 32,
                                   "output_dim": 1, "noise": 0.1, "seed": 0}, read=_read_teacher_student),
    DatasetSpec("sparse-regression", "x ~ N(0, I), y = x w* + noise, w* k-sparse", "regression", 200, 1000,
                (100,), 1, options={"input_dim": 100, "k": 5, "n_train": 200, "n_test": 1000, "noise": 0.1,
                                    "seed": 0}, read=_read_sparse),
]}


def availability(spec: DatasetSpec, data_dir=None) -> str:
    """``generated``/``bundled``, or whether the files were found and where."""
    if not spec.files:
        return "bundled with scikit-learn" if spec.name == "digits" else "generated"
    root, how = resolve_data_dir(data_dir)
    if spec.name == "cifar10":
        found = any(all((root / sub / f).is_file() for f in cifar10.TRAIN_FILES + cifar10.TEST_FILES)
                    for sub in cifar10.SUBDIRS)
    else:
        found = all((root / f).is_file() for f in spec.files)
    return f"{'found in' if found else 'missing from'} {root / spec.files[0].split('/')[0]} ({how})"
