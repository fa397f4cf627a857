"""The named datasets: what each is, its sizes and options, and which function reads or generates it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from genlab.data import cifar10, idx, mnist1d, synthetic
from genlab.data.digits import load_digits_split
from genlab.data.paths import download_root, locate_folder, search_roots
from genlab.errors import ConfigError
from genlab.registry import Registry


@dataclass(frozen=True)
class DatasetSpec:
    """One named dataset: sizes (with default options), task, options with their defaults, and its reader.

    ``read(data_dir, **options)`` returns ``(x_train, y_train, x_test, y_test, info)`` with class indices (int64)
    as targets for classification and float32 ``(N, output_dim)`` values for regression.
    """

    name: str
    description: str
    task: str                          # "classification" | "regression"
    n_train: int
    n_test: int
    input_shape: tuple[int, ...]
    output_dim: int                    # number of classes, or target dimension for regression
    files: list[str] = field(default_factory=list)   # file names it needs, all in one of ``subdirs``
    options: dict[str, Any] = field(default_factory=dict)
    read: Callable[..., tuple] = field(default=None, repr=False)
    subdirs: list[str] = field(default_factory=list)  # folders of the data directory searched for the files
    factory: Callable[..., tuple] | None = field(default=None, repr=False)  # a user's (register_dataset)

    @property
    def num_classes(self) -> int | None:
        """The number of classes; ``None`` for regression."""
        return self.output_dim if self.task == "classification" else None

    @property
    def default_loss(self) -> str:
        """``"ce"`` for classification, ``"mse"`` for regression."""
        return "ce" if self.task == "classification" else "mse"

    @property
    def needs_files(self) -> bool:
        """Whether the dataset is read from files (rather than generated or bundled)."""
        return bool(self.files)


def _idx(name: str) -> Callable[..., tuple]:
    return lambda data_dir: idx.load_idx_dataset(name, data_dir)


_CIFAR_FILES = cifar10.TRAIN_FILES + cifar10.TEST_FILES

DATASETS: dict[str, DatasetSpec] = Registry({s.name: s for s in [
    DatasetSpec("mnist1d", "MNIST-1D (Greydanus 2020), generated procedurally", "classification", 4000, 1000,
                (40,), 10, options={"seed": 42, "num_samples": 5000}, read=mnist1d.load_mnist1d),
    DatasetSpec("digits", "scikit-learn's bundled 8x8 handwritten digits (writer-ordered split)",
                "classification", 1437, 360, (1, 8, 8), 10, read=load_digits_split),
    DatasetSpec("mnist", "MNIST from the official IDX gz files", "classification", 60000, 10000, (1, 28, 28), 10,
                files=idx.ALL_FILES, read=_idx("mnist"), subdirs=["mnist"]),
    DatasetSpec("fashion-mnist", "Fashion-MNIST from the official IDX gz files", "classification", 60000, 10000,
                (1, 28, 28), 10, files=idx.ALL_FILES, read=_idx("fashion-mnist"), subdirs=["fashion-mnist"]),
    DatasetSpec("cifar10", "CIFAR-10 from the official binary batch files", "classification", 50000, 10000,
                (3, 32, 32), 10, files=_CIFAR_FILES, read=cifar10.load_cifar10, subdirs=cifar10.SUBDIRS),
    DatasetSpec("teacher-student", "x ~ N(0, I), y = random tanh teacher(x) + noise", "regression", 1000, 1000,
                (20,), 1, options={"input_dim": 20, "n_train": 1000, "n_test": 1000, "teacher_width": 32,
                                   "output_dim": 1, "noise": 0.1, "seed": 0}, read=synthetic.load_teacher_student),
    DatasetSpec("sparse-regression", "x ~ N(0, I), y = x w* + noise, w* k-sparse", "regression", 200, 1000,
                (100,), 1, options={"input_dim": 100, "k": 5, "n_train": 200, "n_test": 1000, "noise": 0.1,
                                    "seed": 0}, read=synthetic.load_sparse_regression),
]})


def locate(spec: DatasetSpec, data_dir=None) -> tuple[bool | None, str]:
    """``(found, where)``: whether the dataset's files are all present (``None`` if it needs none) and where.

    ``where`` is the folder holding them (or the first folder searched, if missing) with how the data
    directory was chosen, or ``"generated"`` / ``"bundled with scikit-learn"``.
    """
    if not spec.needs_files:
        return None, {"digits": "bundled with scikit-learn"}.get(spec.name, spec.subdirs[0] if spec.subdirs
                                                                  and spec.subdirs[0].startswith("user") else
                                                                  "generated")
    roots = search_roots(data_dir)
    found = locate_folder(spec.files, roots, spec.subdirs)
    if found is not None:
        return True, f"{found[0]} ({found[1]})"
    root, how = roots[0]
    return False, f"{root / spec.subdirs[0]} ({how})"


def availability(spec: DatasetSpec, data_dir=None) -> str:
    """One phrase for listings: ``generated``/``bundled ...``, or ``found in DIR (how)`` / ``missing from ...``
    (with, for a dataset genlab can fetch, where a download would put it)."""
    from genlab.data.sources import SOURCES

    found, where = locate(spec, data_dir)
    if found is None:
        return where
    if found:
        return f"found in {where}"
    from genlab.data.download import downloads_allowed

    if spec.name in SOURCES and downloads_allowed():
        return f"not here yet: fetched on first use into {download_root(data_dir)[0] / SOURCES[spec.name].folder}"
    return f"missing from {where}"


def register_dataset(name: str, factory: Callable[..., tuple], *, task: str = "classification",
                     input_shape: tuple[int, ...], output_dim: int, n_train: int = 0, n_test: int = 0,
                     options: dict[str, Any] | None = None, description: str = "") -> DatasetSpec:
    """Make ``factory(**options) -> (x_train, y_train, x_test, y_test)`` a named dataset.

    Targets: class indices (int64) for ``task="classification"``, float ``(N, output_dim)`` for
    ``"regression"``. ``options`` are the factory's keyword options with their defaults (what
    ``--dataset-option`` may set). Then ``genlab train --import mymodule --dataset NAME`` (and everything
    built on named datasets: subsets, label noise, one-hot MSE targets, fingerprints) works on it.
    """
    if task not in ("classification", "regression"):
        raise ConfigError(f"register_dataset: task {task!r}; allowed: classification, regression")
    if dict.__contains__(DATASETS, name) and not dict.__getitem__(DATASETS, name).subdirs[:1] == ["user factory"]:
        raise ConfigError(f"register_dataset: {name!r} is one of genlab's own datasets; choose another name")

    def read(data_dir=None, **opts):
        x_tr, y_tr, x_te, y_te = factory(**opts)
        return x_tr, y_tr, x_te, y_te, {"source": f"user factory {getattr(factory, '__qualname__', factory)}"}

    spec = DatasetSpec(name, description or name, task, n_train, n_test, tuple(input_shape), int(output_dim),
                       options=dict(options or {}), read=read, subdirs=["user factory"], factory=factory)
    dict.__setitem__(DATASETS, name, spec)
    return spec
