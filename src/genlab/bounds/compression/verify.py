"""``genlab verify``: re-check a certificate from itself, its message and the data, field by field.

Order: the certificate's form (:func:`~genlab.bounds.compression.record.parse_certificate`: types, ranges,
unknown fields, file names confined to its directory), the sizes it implies (counted on the ``meta`` device,
before anything is allocated), the message and prior files against their hashes, the bits, the recorded choices
against the predictor and the declared grid, the data against its hash, then the predictor rebuilt from the
message alone and every number recomputed. A malformed certificate is bad input (exit 2); one that does not
check out raises :class:`~genlab.bounds.compression.certificate.VerificationError` (exit 1) naming every
mismatch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from genlab.bounds.compression.certificate import (VerificationError, build_architecture, preprocessing_bits,
                                                   check_choices_in_grid, class_labels, evaluate_certificate,
                                                   grid_bits, load_certificate_data, rebuild_predictor,
                                                   sha256_bytes)
from genlab.bounds.compression.coding import message_bits
from genlab.bounds.compression.provenance import code_problems
from genlab.bounds.compression.record import (MAX_MESSAGE_BYTES, MAX_PARAMETERS, RECORDED_ONLY, Certificate,
                                              CertificateError, parse_certificate, predictor_choices)
from genlab.bounds.compression.subspace import DENSE_MAX_ENTRIES
from genlab.errors import ConfigError


def read_certificate(path: str | Path) -> tuple[dict[str, Any], Path]:
    """A certificate (checked for form, see :func:`parse_certificate`) and its directory; the path may name the
    directory or the JSON file. Raises :class:`CertificateError` (exit 2) for anything that is not one."""
    cert, folder = _parse_file(path)
    return cert.model_dump(), folder


def _parse_file(path: str | Path) -> tuple[Certificate, Path]:
    path = Path(path)
    file = path / "certificate.json" if path.is_dir() else path
    if not file.is_file():
        raise CertificateError(f"certificate {file} not found")
    try:
        values = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise CertificateError(f"certificate {file} is not readable JSON ({err})") from None
    return parse_certificate(values, str(file)), file.parent


def _read_beside(folder: Path, name: str, what: str, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    file = folder / name
    try:
        if not file.is_file() or file.resolve().parent != folder.resolve():
            raise VerificationError(f"{what} {file} is missing (it must lie beside certificate.json)")
        if file.stat().st_size > limit:
            raise CertificateError(f"{what} {file} is {file.stat().st_size:,} bytes, more than the {limit:,} a "
                                   f"certificate's files may hold")
        return file.read_bytes()
    except OSError as err:
        raise VerificationError(f"{what} {file} is not readable ({err})") from None


def check_sizes(cert: Certificate) -> int:
    """The number of parameters of the certified network, counted without allocating it; refuses sizes a
    verifier should not build. Returns the covered parameter count it implies (checked later against the model)."""
    spec = cert.model
    pixels = math.prod(spec.input_shape)
    if pixels > 10 ** 7 or min(spec.input_shape) < 1:
        raise CertificateError(f"model.input_shape {spec.input_shape}: not a plausible input shape")
    try:
        with torch.device("meta"):
            base = build_architecture(spec.model_dump())
    except ConfigError as err:
        raise CertificateError(f"field model: {err}") from None
    total = sum(p.numel() for p in base.parameters())
    if total > MAX_PARAMETERS:
        raise CertificateError(f"model: {total:,} parameters, more than the {MAX_PARAMETERS:,} a verifier builds")
    p = cert.projection
    if p.d > p.covered_parameters or p.covered_parameters > total:
        raise VerificationError(f"projection: d = {p.d:,} and {p.covered_parameters:,} covered parameters do not fit "
                                f"a network of {total:,} parameters")
    if p.kind == "dense" and p.d * p.covered_parameters > DENSE_MAX_ENTRIES:
        raise CertificateError(f"projection: a dense {p.covered_parameters:,} x {p.d:,} matrix is more than the "
                               f"{DENSE_MAX_ENTRIES:,} entries genlab builds")
    return total


def _choice_problems(cert: Certificate) -> list[str]:
    """Recorded choices that contradict the predictor, and grid choices outside the declared values."""
    problems = [f"choices.{key}: recorded {cert.choices[key]!r}, but the certified predictor has {value!r}"
                for key, value in predictor_choices(cert).items() if key in cert.choices and cert.choices[key] != value]
    if cert.data.seed != cert.model.seed:
        problems.append(f"data.seed {cert.data.seed} differs from model.seed {cert.model.seed} (one run, one seed)")
    try:
        check_choices_in_grid(cert.choices, cert.grid)
    except ConfigError as err:
        problems.append(str(err))
    return problems


def _bits_problems(cert: Certificate, message: bytes, tolerance: float) -> list[str]:
    problems = []
    if sha256_bytes(message) != cert.message_sha256:
        problems.append(f"{cert.message_file} differs from the certified message (SHA-256)")
    if message_bits(message) != cert.message_bits:
        problems.append(f"{cert.message_file} is {message_bits(message)} bits, the certificate charges "
                        f"{cert.message_bits}")
    # init and transfer priors have split 0 (parse_certificate checks it): the bound is on every point
    charged = preprocessing_bits(cert.data.normalise_first, cert.prior.split, cert.data.name)
    if cert.preprocessing.bits != charged:
        problems.append(f"preprocessing.bits: {cert.preprocessing.bits}, genlab charges {charged} for this "
                        f"normalisation and prior split")
    bits = grid_bits(cert.grid)
    if abs(bits - cert.grid_bits) > tolerance:
        problems.append(f"grid_bits {cert.grid_bits} do not match the declared grid ({bits})")
    if abs(bits + charged - cert.hyperparameter_bits) > tolerance:
        problems.append(f"hyperparameter_bits {cert.hyperparameter_bits} do not match the declared grid "
                        f"({bits + charged})")
    if abs(cert.message_bits + cert.hyperparameter_bits - cert.total_bits) > tolerance:
        problems.append(f"total_bits {cert.total_bits} is not message_bits + hyperparameter_bits")
    return problems


def verify(path: str | Path, *, data_dir: str | None = None, tolerance: float = 1e-9) -> dict[str, Any]:
    """Re-check a certificate from itself and its message alone; returns the recomputed figures.

    Every field is recomputed, cross-checked or (:data:`~genlab.bounds.compression.record.RECORDED_ONLY`)
    only recorded; see :mod:`genlab.bounds.compression.record`. The returned dict holds the recomputed figures,
    ``original`` (after the fact: the certificate's field, its figures recomputed and matched) and
    ``recorded_only``, the fields nothing could check.

    Raises:
        CertificateError: not a well-formed certificate (exit 2).
        VerificationError: any mismatch (message, prior file, bits, choices, data, theta0, codebook, covered
            parameters, counts, errors, bounds) (exit 1).
        MessageError: the message is truncated or corrupt.
    """
    cert, folder = _parse_file(path)
    values = cert.model_dump()
    if cert.code is not None:  # the user's own code: the modules passed with --import must be the certified ones
        problems = code_problems(values["code"], cert.model.name, cert.data.name)
        if problems:
            raise VerificationError("certificate does not verify: " + "; ".join(problems))
    check_sizes(cert)
    message = _read_beside(folder, cert.message_file, "message")
    problems = _bits_problems(cert, message, tolerance) + _choice_problems(cert)
    prior_state = None
    if cert.prior.kind in ("trained", "transfer"):
        from genlab.train.checkpoint import load_state_dict

        prior_bytes = _read_beside(folder, cert.prior.file, "prior centre", limit=4 * MAX_PARAMETERS + 2 ** 20)
        if sha256_bytes(prior_bytes) != cert.prior.sha256:
            raise VerificationError(f"prior centre {folder / cert.prior.file} differs from the certified one")
        prior_state = load_state_dict(folder / cert.prior.file)
    if problems:
        raise VerificationError("certificate does not verify: " + "; ".join(problems))
    data = load_certificate_data(values, data_dir)
    if cert.data.n_train_total != len(data.x_train) or list(data.input_shape) != cert.model.input_shape \
            or data.output_dim != cert.model.output_dim:
        problems.append(f"data: {len(data.x_train)} training points of shape {list(data.input_shape)} and "
                        f"{data.output_dim} classes here; the certificate records {cert.data.n_train_total}, "
                        f"{cert.model.input_shape} and {cert.model.output_dim}")
    if data.info.get("normalisation", "dataset default") != cert.preprocessing.normalisation:
        problems.append("preprocessing.normalisation differs from the dataset's")
    if not 0 <= cert.prior.split < cert.data.n_train_total:
        problems.append(f"prior.split {cert.prior.split} leaves no points to bound")
    if problems:
        raise VerificationError("certificate does not verify: " + "; ".join(problems))
    model = rebuild_predictor(values, message, prior_state)   # checks the buffers' names and the codebook
    if model.covered != cert.projection.covered_parameters:
        problems.append(f"projection.covered_parameters: {model.covered} here, {cert.projection.covered_parameters} "
                        f"certified")
    figures = evaluate_certificate(values, message, data, model)
    if cert.original is not None:   # after the fact: the original's weights lie beside the certificate
        from genlab.bounds.compression.original import original_problems

        problems += original_problems(cert, folder, data, model, class_labels, tolerance)
    for key in ("n", "train_errors", "test_errors", "message_bits"):
        if figures[key] != getattr(cert, key):
            problems.append(f"{key}: recomputed {figures[key]}, certified {getattr(cert, key)}")
    for key in ("train_error", "test_error", "total_bits", "bound"):
        if abs(figures[key] - getattr(cert, key)) > tolerance:
            problems.append(f"{key}: recomputed {figures[key]:.6g}, certified {getattr(cert, key)}")
    for key in ("constant_predictor_error", "vacuous"):  # recorded since 2026-12-02: checked when present
        if getattr(cert, key) is not None and figures[key] != getattr(cert, key):
            problems.append(f"{key}: recomputed {figures[key]}, certified {getattr(cert, key)}")
    for name, value in figures["bounds"].items():
        if abs(value - cert.bounds[name]) > tolerance:
            problems.append(f"bounds.{name}: recomputed {value:.6f}, certified {cert.bounds[name]}")
    if problems:
        raise VerificationError("certificate does not verify: " + "; ".join(problems))
    return {**figures, "original": values.get("original"),
            "recorded_only": [k for k in RECORDED_ONLY if _field(values, k) is not None]}


def _field(values: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        values = values.get(part) if isinstance(values, dict) else None
    return values
