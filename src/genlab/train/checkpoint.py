"""Checkpoints as safetensors (never pickle): model, optimizer, RNG state and step.

Tensors go into the safetensors body; everything else (the step, the optimizer's
param_groups and its non-tensor state) goes into the header's string metadata as
JSON. Files are written to a temporary name and renamed, so the previous
checkpoint survives a kill in the middle of a save; each carries the SHA-256 of its
contents in its metadata, checked on every load, so damage is reported as damage.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from genlab.errors import CheckpointError

FORMAT = "genlab-checkpoint-1"


def content_digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 of every tensor (name, dtype, shape, bytes) and every metadata entry, in name order: what a
    tensor file's ``sha256`` metadata records and every load checks."""
    h = hashlib.sha256()
    for key in sorted(metadata):
        if key != "sha256":
            h.update(f"meta {key}={metadata[key]}\n".encode())
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous()
        h.update(f"tensor {key} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_state_dict(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save a flat tensor dict atomically (contiguous CPU copies), with the checksum of its contents in its
    metadata (``sha256``, see :func:`content_digest`)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    metadata = dict(metadata or {})
    metadata["sha256"] = content_digest(tensors, metadata)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    except (SafetensorError, OSError) as err:  # a full disk, say: the previous file is still intact
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {path} ({err}); the previous version, if any, is kept") from None


def read_tensor_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors file, read in one open; a missing or unreadable file, or one
    whose contents differ from its recorded checksum (files written before checksums carry none), is a
    :class:`CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:  # RuntimeError: a short file
        raise CheckpointError(f"{path} is corrupt ({err}); delete it to start the run afresh") from None
    if "sha256" in metadata and content_digest(tensors, metadata) != metadata["sha256"]:
        raise CheckpointError(f"{path} is corrupt: its contents differ from the checksum written with them (the file "
                              f"was damaged after it was saved); delete it to start afresh from the files before it")
    return tensors, metadata


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (see :func:`read_tensor_file`)."""
    return read_tensor_file(path)[0]


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, rest = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        rest["state"][str(pid)] = {}
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
                rest["state"][str(pid)][key] = {"tensor": True, "dtype": str(value.dtype)}
            else:
                rest["state"][str(pid)][key] = {"value": value}
    # optimizer-specific top-level entries (e.g. SGLD's noise generator state): tensors or JSON values
    for key, value in state.items():
        if key in ("state", "param_groups"):
            continue
        if isinstance(value, torch.Tensor):
            tensors[f"optim_extra.{key}"] = value
            rest.setdefault("extra", {})[key] = {"tensor": True}
        else:
            rest.setdefault("extra", {})[key] = {"value": value}
    return tensors, rest


def _join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for pid, pstate in rest["state"].items():
        state[int(pid)] = {
            key: tensors[f"optim.{pid}.{key}"] if desc.get("tensor") else desc["value"]
            for key, desc in pstate.items()
        }
    out = {"state": state, "param_groups": rest["param_groups"]}
    for key, desc in rest.get("extra", {}).items():
        out[key] = tensors[f"optim_extra.{key}"] if desc.get("tensor") else desc["value"]
    return out


def save_checkpoint(path: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    extra: dict[str, Any] | None = None) -> None:
    """Write everything needed to continue training exactly from ``step``."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_rest = _split_optimizer_state(optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    metadata = {"format": FORMAT, "step": str(step), "optimizer": json.dumps(opt_rest),
                "extra": json.dumps(extra or {})}
    save_state_dict(path, tensors, metadata)


def read_checkpoint_metadata(path: Path) -> dict[str, Any]:
    """The checkpoint's step and extra fields, without loading the tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:  # RuntimeError: a short file
        raise CheckpointError(f"{path} is corrupt ({err}); delete it to start the run afresh") from None
    return _checkpoint_fields(path, meta)


def _checkpoint_fields(path: Path, meta: dict[str, str]) -> dict[str, Any]:
    """``{"step", "extra"}`` of a checkpoint's metadata, each checked."""
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a genlab checkpoint (format {meta.get('format')!r}, want {FORMAT})")
    step = meta.get("step", "")
    if not (step.isdigit() and int(step) <= 10 ** 12):
        raise CheckpointError(f"{path} is corrupt: its step {step!r} is not a step count")
    try:
        extra = json.loads(meta.get("extra", "{}"))
    except json.JSONDecodeError:
        extra = None
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path} is corrupt: its metadata 'extra' is not a JSON object")
    return {"step": int(step), "extra": extra}


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimizer and RNG state in place; returns ``{"step", "extra"}``."""
    tensors, metadata = read_tensor_file(path)  # one read: the metadata checked is the one the tensors came with
    meta = _checkpoint_fields(path, metadata)
    try:
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        model.load_state_dict(model_state)
        optimizer.load_state_dict(_join_optimizer_state(tensors, json.loads(metadata["optimizer"])))
        torch.set_rng_state(tensors["rng.torch"])
        cuda_states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states)
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path} does not match this run's model or optimizer ({err})") from None
    return meta
