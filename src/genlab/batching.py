"""What an :class:`~genlab.objective.Objective` streams over: tensors in memory, or any re-iterable of batches.

A batch is ``(inputs, targets)``: ``inputs`` a tensor, a tuple/list of tensors (passed to ``forward`` as
positional arguments) or a dict of tensors (passed as keyword arguments); ``targets`` a tensor. Two sources:

* :class:`TensorData`: the dataset in memory (moved to the device once); batches are slices, and any subset
  of example indices can be streamed (what mini-batch training and per-step subsets use).
* :class:`LoaderData`: any re-iterable of batches, e.g. a ``torch.utils.data.DataLoader``; each batch is
  moved to the device as it comes and dropped after use, so memory does not grow with the dataset.
  Full-dataset curvature needs the same batches on every pass: :meth:`LoaderData.check_deterministic`
  compares two passes (as curvlinops does) and refuses a shuffling or augmenting loader.

Both can hand out a *subset* of their examples held apart from the rest (``subset``): what one rank of a
computation sharded over processes keeps, so that no rank holds (or moves to its device) the whole dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from genlab.errors import ConfigError

Batch = tuple[Any, torch.Tensor]


def map_tensors(obj: Any, fn) -> Any:
    """Apply ``fn`` to every tensor in a tensor / tuple / list / dict structure."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    return obj


def tensors_of(obj: Any) -> list[torch.Tensor]:
    """Every tensor of a structure, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, Mapping):
        return [t for k in obj for t in tensors_of(obj[k])]
    if isinstance(obj, (tuple, list)):
        return [t for v in obj for t in tensors_of(v)]
    return []


def leading_size(inputs: Any) -> int:
    """Number of examples of an input structure (the first dimension of its first tensor)."""
    ts = tensors_of(inputs)
    if not ts:
        raise ConfigError("inputs hold no tensor")
    return int(ts[0].shape[0])


def to_device(obj: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Move a structure's tensors to ``device``; floating-point ones also to ``dtype``."""
    return map_tensors(obj, lambda t: t.to(device, dtype=dtype if t.is_floating_point() else t.dtype))


def take(obj: Any, index) -> Any:
    """Index the first dimension of every tensor of a structure (slice or index tensor)."""
    return map_tensors(obj, lambda t: t[index])


def split_batch(batch: Any) -> Batch:
    """``(inputs, targets)`` from one item a loader yields (a pair, or a list of two)."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, Mapping) and set(batch) >= {"inputs", "targets"}:
        return batch["inputs"], batch["targets"]
    raise ConfigError(f"a batch must be (inputs, targets) or {{'inputs': ..., 'targets': ...}}; got "
                      f"{type(batch).__name__}" + (f" of length {len(batch)}" if hasattr(batch, "__len__") else ""))


class TensorData:
    """The dataset in memory: ``inputs`` (tensor, tuple or dict of tensors) and ``targets``, on one device."""

    in_memory = True

    def __init__(self, inputs: Any, targets: torch.Tensor, device: torch.device, dtype: torch.dtype):
        n_in, n_out = leading_size(inputs), len(targets)
        if n_in != n_out:
            raise ConfigError(f"Objective: the inputs have {n_in} examples but the targets have {n_out}")
        for t in tensors_of(inputs):
            if t.shape[0] != n_in:
                raise ConfigError(f"Objective: input tensors differ in their number of examples "
                                  f"({t.shape[0]} vs {n_in})")
        self.inputs = to_device(inputs, device, dtype)
        self.targets = targets.to(device, dtype=dtype if targets.is_floating_point() else targets.dtype)
        self.n = n_in

    def batches(self, batch_size: int, indices: torch.Tensor | None = None) -> Iterator[Batch]:
        if indices is None:
            for start in range(0, self.n, batch_size):
                sl = slice(start, start + batch_size)
                yield take(self.inputs, sl), self.targets[sl]
        else:
            indices = indices.to(self.targets.device)
            for start in range(0, len(indices), batch_size):
                idx = indices[start:start + batch_size]
                yield take(self.inputs, idx), self.targets[idx]

    def first_inputs(self) -> Any:
        return take(self.inputs, slice(0, 1))

    def subset(self, indices: torch.Tensor | None, device: torch.device, dtype: torch.dtype) -> TensorData:
        """The examples ``indices`` (all if None) on ``device``. Indexing copies, so the subset has its own
        storage and the full tensors can be freed once nothing else refers to them."""
        if indices is None:
            return TensorData(self.inputs, self.targets, device, dtype)
        idx = indices.to(self.targets.device)
        return TensorData(take(self.inputs, idx), self.targets[idx], device, dtype)


class LoaderData:
    """Any re-iterable of ``(inputs, targets)`` batches (a ``DataLoader``), streamed batch by batch."""

    in_memory = False

    def __init__(self, loader: Iterable, device: torch.device, dtype: torch.dtype):
        if iter(loader) is loader:
            raise ConfigError("Objective: data is a one-shot iterator; give a re-iterable (a DataLoader, a list "
                              "of batches) so full-dataset passes can be repeated")
        self.loader, self.device, self.dtype = loader, device, dtype
        self._n: int | None = None
        self.deterministic: bool | None = None  # unknown until check_deterministic

    @property
    def n(self) -> int:
        """Examples per pass: ``len(dataset)`` for a DataLoader that reads its map-style dataset in order, else
        counted on the first pass."""
        if self._n is None:
            self._n = _in_order_length(self.loader)
        if self._n is None:
            self._n = sum(len(t) for _, t in self._raw())
        return self._n

    def _raw(self) -> Iterator[Batch]:
        for batch in self.loader:
            yield split_batch(batch)

    def batches(self, batch_size: int | None = None, indices: torch.Tensor | None = None) -> Iterator[Batch]:
        if indices is not None:
            raise ConfigError("this Objective streams a data loader: subsets of example indices need the data in "
                              "memory (give tensors), or pass a loader over the subset")
        count = 0
        for inputs, targets in self._raw():
            count += len(targets)
            yield to_device(inputs, self.device, self.dtype), to_device(targets, self.device, self.dtype)
        if self._n is None:
            self._n = count
        elif count != self._n:
            raise ConfigError(f"the data loader gave {count} examples on this pass and {self._n} on an earlier "
                              f"one; full-dataset quantities need the same examples on every pass")

    def first_inputs(self) -> Any:
        inputs, _ = next(iter(self._raw()))
        return to_device(take(inputs, slice(0, 1)), self.device, self.dtype)

    def check_deterministic(self) -> None:
        """Refuse a loader whose batches differ between two passes (shuffling, augmentation, random crops).

        Compares a SHA-256 digest of every batch's bytes over two passes; the result is cached.
        """
        if self.deterministic:
            return
        first = [_digest(b) for b in self._raw()]
        second = [_digest(b) for b in self._raw()]
        self.deterministic = first == second
        if not self.deterministic:
            where = next((i for i, (a, b) in enumerate(zip(first, second)) if a != b), min(len(first), len(second)))
            raise ConfigError(f"the data loader gives different batches on two passes (first difference at batch "
                              f"{where}); full-batch curvature needs a fixed pass: use shuffle=False and no random "
                              f"augmentation for the Objective's loader")
        self._n = sum(n for n, _ in first)

    def subset(self, indices: torch.Tensor | None, device: torch.device, dtype: torch.dtype) -> LoaderData:
        """The examples ``indices`` (all if None) on ``device``: a DataLoader over ``Subset(dataset, indices)``
        with the loader's batch size, collate function and workers, so only those examples are ever read. Needs
        a ``torch.utils.data.DataLoader`` reading a map-style dataset in order (``shuffle=False``, no sampler of
        its own, ``drop_last=False``): for any other re-iterable genlab cannot tell which batch holds which
        example (shard it yourself, e.g. one loader per rank in your own ``torchrun`` job)."""
        if indices is None:
            return LoaderData(self.loader, device, dtype)
        from torch.utils.data import DataLoader, Subset

        if _in_order_length(self.loader) is None:
            what = type(self.loader).__name__
            if isinstance(self.loader, DataLoader):
                what = (f"a DataLoader with sampler {type(self.loader.sampler).__name__}, drop_last="
                        f"{self.loader.drop_last}")
            raise ConfigError(f"cannot take a subset of the examples of {what}: sharding a loader needs a "
                              f"torch DataLoader that reads a map-style dataset in order (shuffle=False, no "
                              f"sampler of its own, drop_last=False), or give the data as tensors")
        old = self.loader
        loader = DataLoader(Subset(old.dataset, indices.tolist()), batch_size=old.batch_size,
                            collate_fn=old.collate_fn, num_workers=old.num_workers, pin_memory=old.pin_memory,
                            worker_init_fn=old.worker_init_fn, timeout=old.timeout)
        out = LoaderData(loader, device, dtype)
        out.deterministic = self.deterministic  # the same dataset read in the same order
        return out


def _in_order_length(loader: Any) -> int | None:
    """``len(dataset)`` when ``loader`` is a DataLoader giving every example of a map-style dataset once, in
    index order, in batches of its ``batch_size``; ``None`` for anything else."""
    from torch.utils.data import BatchSampler, DataLoader, IterableDataset, SequentialSampler

    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return None
    if not isinstance(loader.sampler, SequentialSampler) or loader.batch_size is None or loader.drop_last:
        return None
    if type(loader.batch_sampler) is not BatchSampler:
        return None
    return len(loader.dataset)


def tensor_bytes(t: torch.Tensor) -> bytes:
    """A tensor's raw bytes on the CPU (what data fingerprints hash)."""
    return t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _digest(batch: Batch) -> tuple[int, str]:
    h = hashlib.sha256()
    for t in tensors_of(batch):
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(tensor_bytes(t))
    return len(batch[1]), h.hexdigest()
