"""Named datasets returning train and test tensors, with documented normalisation.

>>> from genlab.data import load_dataset
>>> data = load_dataset("mnist1d", n_train=1000, label_noise=0.1, loss="mse")
>>> data.x_train.shape, data.y_train.shape, data.info["n_corrupted"]
(torch.Size([1000, 40]), torch.Size([1000, 10]), 100)

``load_dataset`` reads (or generates) the dataset, then, in this order: standardises
the inputs with the first ``normalise_first`` training points' statistics (if asked); keeps the
first ``n_train`` training points; corrupts a fraction ``label_noise`` of their
labels (each to a different class, test labels untouched); shapes the targets for
the loss (``ce``: class indices; ``mse``: one-hot rows, or the values for
regression). Files are looked for under ``data_dir``, else ``$GENLAB_DATA``, else
``../shared/data``, else the user cache directory (:func:`resolve_data_dir`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genlab.data.checks import check_int, check_option_names, check_real
from genlab.data.paths import resolve_data_dir
from genlab.data.registry import DATASETS, DatasetSpec, availability, locate
from genlab.data.transforms import as_targets, corrupt_labels, standardise_on_first, take_first
from genlab.errors import DataError

LOSSES = ("ce", "mse")


@dataclass
class Dataset:
    """Train and test tensors of one dataset, with what a model and a loss need to know.

    ``y_*`` are the targets in the form ``loss`` needs; ``labels_*`` are the class
    indices (after corruption, for train) of a classification dataset, ``None``
    for regression. ``input_shape`` is per example. ``x_heldout``/``y_heldout`` are
    the training-split points after the first ``n_train`` (uncorrupted; ``None`` when
    all are used): draws from the training distribution that neither training nor
    the test figures touch (SGLD's data-independent prior estimates them).
    ``x_ghost``/``y_ghost``/``ghost_of``: the CMI bound's super-sample (:mod:`genlab.data.supersample`), the
    pairs' members that did not train (row ``j`` pairs with training position ``ghost_of[j]``); else ``None``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str
    num_classes: int | None
    loss: str
    input_shape: tuple[int, ...]
    output_dim: int
    info: dict[str, Any] = field(default_factory=dict)
    labels_train: torch.Tensor | None = None
    labels_test: torch.Tensor | None = None
    x_heldout: torch.Tensor | None = None
    y_heldout: torch.Tensor | None = None
    x_ghost: torch.Tensor | None = None
    y_ghost: torch.Tensor | None = None
    ghost_of: torch.Tensor | None = None


def load_dataset(name: str, *, n_train: int | None = None, label_noise: float = 0.0, loss: str | None = None,
                 seed: int = 0, data_dir: str | Path | None = None, options: dict | None = None,
                 normalise_first: int | None = None) -> Dataset:
    """Load the named dataset (see :data:`DATASETS`) as float32 inputs and targets for ``loss``.

    Args:
        name: a key of :data:`DATASETS`.
        n_train: keep the first ``n_train`` training points (all if None).
        label_noise: fraction of training labels replaced by a random different class.
        loss: ``"ce"`` or ``"mse"``; default ``ce`` for classification, ``mse`` for regression.
        seed: seeds the label corruption.
        data_dir: directory of dataset files (default: see :func:`resolve_data_dir`).
        options: dataset-specific options (generator sizes, seeds; see ``DATASETS[name].options``).
        normalise_first: standardise each input channel with the statistics of the first ``normalise_first``
            training points (after the dataset's own normalisation, which it cancels), see
            :func:`~genlab.data.transforms.standardise_on_first`; ``None``: the dataset's normalisation only.

    Returns:
        a :class:`Dataset`: float32 inputs, normalised as ``info["normalisation"]`` says (with the mean/std
        used); targets shaped for ``loss``; ``labels_*`` the class indices (classification only).

    Raises:
        DataError: unknown name, option or loss; a value out of range; a missing or corrupt file.
    """
    if name not in DATASETS:
        raise DataError(f"dataset: unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    options = dict(options or {})
    check_option_names(name, options, spec.options)
    loss = spec.default_loss if loss is None else loss
    if loss not in LOSSES:
        raise DataError(f"loss: unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
    if loss == "ce" and spec.task == "regression":
        raise DataError(f"loss 'ce' needs a classification dataset; {name} is regression (use loss 'mse')")
    if spec.task == "regression" and label_noise != 0:
        raise DataError(f"label_noise must be 0 for the regression dataset {name} (got {label_noise!r})")
    label_noise = check_real(label_noise, "label_noise", 0.0, 1.0)
    seed = check_int(seed, "seed", 0)
    if n_train is not None:
        check_int(n_train, "n_train", 1)  # the upper bound is checked once the data are read
    x_tr, y_tr, x_te, y_te, info = spec.read(data_dir, **options)
    if normalise_first is not None:
        x_tr, x_te, stats = standardise_on_first(x_tr.float(), x_te.float(), normalise_first, name)
        info = {**info, **stats, "normalisation": f"{info.get('normalisation', 'dataset default')}; then per "
                f"channel (x - mean) / std with the statistics of the first {stats['standardised_on']} training "
                f"points"}
    kept = len(take_first(x_tr, y_tr, n_train, name)[0])
    x_tr, y_tr, x_rest, y_rest = x_tr[:kept], y_tr[:kept], x_tr[kept:], y_tr[kept:]
    info = {**info, "options": {**spec.options, **options}, "n_train": len(x_tr), "n_test": len(x_te),
            "label_noise": label_noise, "n_corrupted": 0, "loss": loss}
    labels_tr = labels_te = None
    if spec.task == "classification":
        y_tr, info["n_corrupted"] = corrupt_labels(y_tr, label_noise, spec.output_dim, seed)
        labels_tr, labels_te = y_tr, y_te
    num_classes = spec.num_classes
    return Dataset(name=name, x_train=x_tr.float(), y_train=as_targets(y_tr, loss, num_classes),
                   x_test=x_te.float(), y_test=as_targets(y_te, loss, num_classes), task=spec.task,
                   num_classes=num_classes, loss=loss, input_shape=tuple(x_tr.shape[1:]),
                   output_dim=int(y_tr.shape[1]) if y_tr.dim() == 2 else spec.output_dim, info=info,
                   labels_train=labels_tr, labels_test=labels_te,
                   x_heldout=x_rest.float() if len(x_rest) else None,
                   y_heldout=as_targets(y_rest, loss, num_classes) if len(x_rest) else None)


def list_datasets(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per named dataset, in :data:`DATASETS` order, for ``genlab datasets``.

    Keys: ``name``, ``description``, ``task``, ``n_train``, ``n_test`` (default sizes), ``input_shape``,
    ``output_dim``, ``classes`` (None for regression), ``loss`` (default), ``options`` (with defaults),
    ``needs_files``, ``found`` (files present: True/False; None if none needed), ``where`` (the folder and how
    the data directory was chosen, or ``generated``/``bundled ...``) and ``available`` (one phrase of both).
    """
    rows = []
    for s in DATASETS.values():
        found, where = locate(s, data_dir)
        rows.append({"name": s.name, "description": s.description, "task": s.task, "n_train": s.n_train,
                     "n_test": s.n_test, "input_shape": s.input_shape, "output_dim": s.output_dim,
                     "classes": s.num_classes, "loss": s.default_loss, "options": dict(s.options),
                     "needs_files": s.needs_files, "found": found, "where": where,
                     "available": availability(s, data_dir)})
    return rows


__all__ = ["DATASETS", "Dataset", "DatasetSpec", "list_datasets", "load_dataset", "resolve_data_dir"]
