"""Checkpoints as safetensors (never pickle): model, optimizer, RNG state and step.

Tensors go into the safetensors body; everything else (the step, the optimizer's
param_groups and its non-tensor state) goes into the header's string metadata as
JSON. Files are written to a temporary name and renamed, so the previous
checkpoint survives a kill in the middle of a save.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genlab.errors import CheckpointError

FORMAT = "genlab-checkpoint-1"


def save_state_dict(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save a flat tensor dict atomically (contiguous CPU copies)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file, turning a missing or corrupt file into :class:`CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt ({err}); delete it to start the run afresh") from None


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
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt ({err}); delete it to start the run afresh") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a genlab checkpoint (format {meta.get('format')!r}, want {FORMAT})")
    return {"step": int(meta["step"]), "extra": json.loads(meta.get("extra", "{}"))}


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimizer and RNG state in place; returns ``{"step", "extra"}``."""
    meta = read_checkpoint_metadata(path)
    tensors = load_state_dict(path)
    try:
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        model.load_state_dict(model_state)
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            opt_rest = json.loads(f.metadata()["optimizer"])
        optimizer.load_state_dict(_join_optimizer_state(tensors, opt_rest))
        torch.set_rng_state(tensors["rng.torch"])
        cuda_states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states)
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path} does not match this run's model or optimizer ({err})") from None
    return meta
