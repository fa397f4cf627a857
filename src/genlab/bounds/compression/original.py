"""Certify a network after the fact (``genlab bound --from-model``): the bound is on a compressed predictor
fitted to it, and the certificate says how often the two agree.

A network trained the ordinary way has far too many free parameters for an Occam bound on itself. What is
certified instead is a compressible predictor close to it: the usual quantized subspace around the *seeded*
initialisation (data-independent, as the prior needs), trained to match the original network's class
probabilities on the training inputs (:mod:`genlab.train.distill`) rather than the labels. The bound is valid for
that compressed predictor -- any way of choosing a message is allowed under a prior fixed in advance -- and says
nothing certified about the original; how close the two are is measured, on the test set and on the bound's
points, and recorded.

The original's weights are copied beside the certificate (``original.safetensors``, hashed), so ``genlab
verify`` recomputes the agreement and the original's test error instead of trusting them. A data-dependent bound
(``--prior-split``) never distils its prior centre: the original has seen every training point, the prior may
see only the first ``m``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genlab.errors import ConfigError

FILE = "original.safetensors"


def _build(spec: dict[str, Any]) -> torch.nn.Module:
    from genlab.bounds.compression.certificate import build_architecture

    with torch.random.fork_rng(devices=[]):   # only the architecture: the weights are loaded
        return build_architecture(spec).to(torch.float32)


def prepare_original(train_config, out: Path, source: str | Path | None = None,
                     module: torch.nn.Module | None = None) -> Path:
    """Write the original network's weights to ``out/original.safetensors`` (from a weights file, a run
    directory or an ``nn.Module``), after checking they fit the architecture ``train_config`` names.

    Raises:
        ConfigError: nothing usable there, a run of another model or dataset, or weights that do not fit.
    """
    from genlab.bounds.compression.certificate import model_spec
    from genlab.train.checkpoint import save_state_dict
    from genlab.train.distill import load_original, original_weights_file
    from genlab.train.run import load_data, read_run_config

    if (source is None) == (module is None):
        raise ConfigError("give the original network once: --from-model PATH (or original=module in Python)")
    if source is not None and Path(source).is_dir():
        _check_same_setup(read_run_config(source), train_config, source)
    data = load_data(train_config)
    spec = model_spec(train_config, data)
    if module is not None:
        state = {k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
                 for k, v in module.state_dict().items()}
        _refuse_another_network(out, state)
        out.mkdir(parents=True, exist_ok=True)
        staged = out / (FILE + ".part")
        save_state_dict(staged, state, metadata={"format": "genlab-original-1"})
        load_original(staged, lambda: _build(spec))      # fits the registered architecture, or one line
        staged.replace(out / FILE)
        return out / FILE
    file = original_weights_file(source)
    original = load_original(file, lambda: _build(spec))
    if not (out / FILE).is_file() or (out / FILE).resolve() != file.resolve():
        _refuse_another_network(out, original.state_dict())
        out.mkdir(parents=True, exist_ok=True)
        save_state_dict(out / FILE, {k: v.detach() for k, v in original.state_dict().items()},
                        metadata={"format": "genlab-original-1", "source": str(source)})
    return out / FILE


def _refuse_another_network(out: Path, state: dict[str, torch.Tensor]) -> None:
    """Refuse to replace ``out/original.safetensors`` by another network's weights while ``out`` holds stages
    (and a certificate) fitted to the one there: replacing it would leave them describing a network that is gone."""
    from genlab.train.checkpoint import load_state_dict

    if not (out / FILE).is_file() or not any((out / stage).exists() for stage in ("subspace", "quantized")):
        return
    there = load_state_dict(out / FILE)
    same = there.keys() == state.keys() and all(torch.equal(there[k], state[k].to(there[k])) for k in there)
    if not same:
        raise ConfigError(f"{out} holds a bound fitted to another network ({out / FILE} differs from the one "
                          f"given); use a new --out for this one")


def _check_same_setup(run_config, train_config, source) -> None:
    mine, theirs = train_config.flat(), run_config.flat()
    for key in ("dataset", "model", "width", "depth", "activation", "dropout", "batchnorm", "model_options",
                "dataset_options", "normalise_first"):
        if mine.get(key) != theirs.get(key):
            raise ConfigError(f"--from-model {source}: that run has {key} = {theirs.get(key)!r}, this bound "
                              f"{mine.get(key)!r}; certify it with the same --{key.replace('_', '-')}")


def original_figures(folder: Path, spec: dict[str, Any], data, predictor: torch.nn.Module, split: int,
                     labels) -> dict[str, Any]:
    """The original network's test error and its agreement with the certified predictor on the test set and
    on the bound's training points; ``labels`` maps targets to class indices."""
    from genlab.bounds.compression.certificate import predictions, sha256_bytes
    from genlab.train.distill import load_original

    original = load_original(folder / FILE, lambda: _build(spec))
    x_test, y_test = data.x_test, labels(data.y_test)
    mine_test, theirs_test = predictions(predictor, x_test), predictions(original, x_test)
    x_bound = data.x_train[split:]
    agree_train = float((predictions(predictor, x_bound) == predictions(original, x_bound)).double().mean())
    return {"file": FILE, "sha256": sha256_bytes((folder / FILE).read_bytes()),
            "test_error": float((theirs_test != y_test).double().mean()),
            "test_agreement": float((mine_test == theirs_test).double().mean()),
            "train_agreement": agree_train}


def original_problems(cert, folder: Path, data, predictor, labels, tolerance: float) -> list[str]:
    """What in the certificate's ``original`` field the files and data here do not bear out."""
    from genlab.bounds.compression.certificate import sha256_bytes

    rec = cert.original
    file = folder / rec.file
    if not file.is_file():
        return [f"original: {file} is missing (it must lie beside certificate.json)"]
    if sha256_bytes(file.read_bytes()) != rec.sha256:
        return [f"original: {file} differs from the certified original network (SHA-256)"]
    spec = cert.model.model_dump()
    try:
        got = original_figures(folder, spec, data, predictor, cert.prior.split, labels)
    except ConfigError as err:
        return [f"original: {err}"]
    return [f"original.{k}: recomputed {got[k]:.6g}, certified {getattr(rec, k)}"
            for k in ("test_error", "test_agreement", "train_agreement") if abs(got[k] - getattr(rec, k)) > tolerance]
