"""The certificate's format, field by field: what each field is, and how ``genlab verify`` checks it.

A certificate is only as good as its weakest unchecked field, so every field is one of:

- **recomputed** by :func:`~genlab.bounds.compression.certificate.verify` from the message, the data and the
  declared settings (errors, bits, bounds, hashes, the codebook, the buffers coded, the covered parameters);
- **checked against this process** (``code``): the ``--import`` modules the verifier passed must be the
  certified ones (same source SHA-256) and register the model and dataset with the same factories;
- **cross-checked** against the fields that define the predictor (each recorded choice the predictor shows:
  ``intrinsic_dim`` is ``projection.d``, ``quant_levels`` the codebook size, ...), and every choice the grid
  names must lie in it;
- **recorded** only (:data:`RECORDED_ONLY`: environment, times, the training run's path, the pipeline's settings
  and the choices that only shaped training): nothing can recompute them; the report labels them as such.

:func:`parse_certificate` validates the types, ranges and sizes of every field (strict: no coercion, finite
numbers, unknown fields refused) and refuses a certificate whose sizes would allocate more than
:data:`MAX_PARAMETERS` parameters before anything is built; a malformed certificate is bad input
(:class:`CertificateError`, exit 2), a mismatch a failed verification (exit 1).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genlab.errors import GenlabError

FORMAT = "genlab-certificate-1"
BOUND_NAMES = ("occam_kl", "langford_seeger", "mcallester", "catoni_grid")
BOUND_KEYS = (*BOUND_NAMES, "catoni_gamma")   # the bounds, and the gamma Catoni's grid chose
MAX_PARAMETERS = 10 ** 8        # a network this size is 400 MB of float32: the largest a verifier builds
MAX_MESSAGE_BYTES = 2 ** 26     # 64 MiB
#: fields nothing can recompute: shown "as recorded", never as checked
# prior.run / prior.dataset: where the prior centre was trained; the verifier checks the file is the one
# certified (SHA-256), never how it was trained (that needs the training data and bit-exact retraining)
RECORDED_ONLY = ("environment", "training_run", "time_s", "settings", "original.source", "prior.run", "prior.dataset")
_SHA256 = r"^[0-9a-f]{64}$"
_FINGERPRINT = r"^[0-9a-f]{16}$"
_SEED = Field(ge=0, lt=2 ** 63)


class CertificateError(GenlabError):
    """A file given as a certificate is not one: missing, unreadable, or a field of the wrong kind."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class DataRecord(_Strict):
    name: str
    n_train: int | None = Field(ge=1)
    label_noise: float = Field(ge=0, le=1)
    loss: Literal["ce", "mse"]
    seed: int = _SEED
    options: dict[str, Any]
    sha256: str = Field(pattern=_FINGERPRINT)
    n_train_total: int = Field(ge=1)
    normalise_first: int | None = Field(None, ge=1)   # absent in certificates before 2026-12-04


class ModelRecord(_Strict):
    name: str
    width: int | None = Field(ge=1, le=2 ** 20)
    depth: int | None = Field(ge=1, le=1024)
    activation: str | None
    dropout: float = Field(ge=0, lt=1)
    batchnorm: bool
    options: dict[str, Any]
    input_shape: list[int] = Field(min_length=1, max_length=4)
    output_dim: int = Field(ge=1, le=2 ** 20)
    seed: int = _SEED


class ProjectionRecord(_Strict):
    kind: Literal["dense", "sparse", "kron"]
    d: int = Field(ge=1, le=MAX_PARAMETERS)
    seed: int = _SEED
    groups: list[str]
    scale: Literal["none", "fan-in"]
    covered_parameters: int = Field(ge=1, le=MAX_PARAMETERS)


class PriorRecord(_Strict):
    kind: Literal["init", "trained", "transfer"]
    split: int = Field(ge=0)
    file: str | None
    sha256: str | None = Field(pattern=_SHA256)
    run: str | None = None
    dataset: str | None = None   # transfer: the dataset the prior centre was trained on


class QuantizationRecord(_Strict):
    levels: int = Field(ge=1, le=256)
    symbol_model: Literal["adaptive", "two-part"]
    codebook: list[float] = Field(min_length=1, max_length=256)


class BufferRecord(_Strict):
    """The predictor's buffers (base-model names, in order), their levels ``L`` and their source: coded in the
    message after ``w``, or fixed at a trained prior centre's (in ``prior.safetensors``)."""

    names: list[str] = Field(min_length=1, max_length=100_000)
    levels: int = Field(ge=2, le=256)
    source: Literal["message", "prior"] = "message"   # prior: a trained prior centre's, in its file


class PreprocessingRecord(_Strict):
    normalisation: str
    bits: int


class ModuleRecord(_Strict):
    module: str
    sha256: str | None = Field(pattern=_SHA256)


class CodeRecord(_Strict):
    """The ``--import`` modules (with their sources' SHA-256) and the user factories behind the predictor and
    its data (``None``: genlab's own); see :mod:`~genlab.bounds.compression.provenance`."""

    imports: list[ModuleRecord]
    model_factory: str | None
    dataset_factory: str | None


class OriginalRecord(_Strict):
    """The network certified after the fact (``--from-model``): its weights beside the certificate, its test
    error and its agreement with the certified predictor (all recomputed by verify; ``source`` recorded only)."""

    file: Literal["original.safetensors"]
    sha256: str = Field(pattern=_SHA256)
    source: str
    test_error: float = Field(ge=0, le=1)
    test_agreement: float = Field(ge=0, le=1)
    train_agreement: float = Field(ge=0, le=1)


class Certificate(_Strict):
    """Every field of ``certificate.json``."""

    format: Literal["genlab-certificate-1"]
    data: DataRecord
    model: ModelRecord
    projection: ProjectionRecord
    theta0_sha256: str = Field(pattern=_SHA256)
    prior: PriorRecord
    quantization: QuantizationRecord
    buffers: BufferRecord | None = None  # None: the model has no buffers
    preprocessing: PreprocessingRecord
    grid: dict[str, list[Any]]
    choices: dict[str, Any]
    grid_bits: float = Field(ge=0)
    hyperparameter_bits: float = Field(ge=0)
    delta: float = Field(gt=0, lt=1)
    reported_bound: Literal["occam_kl", "langford_seeger", "mcallester", "catoni_grid"]
    message_file: str
    message_sha256: str = Field(pattern=_SHA256)
    environment: dict[str, str]
    training_run: str
    n: int = Field(ge=1)
    train_errors: int = Field(ge=0)
    train_error: float = Field(ge=0, le=1)
    test_errors: int = Field(ge=0)
    test_error: float = Field(ge=0, le=1)
    message_bits: int = Field(ge=0)
    total_bits: float = Field(ge=0)
    bounds: dict[str, float]
    bound: float
    constant_predictor_error: float | None = Field(None, ge=0, le=1)  # absent in certificates before 2026-12-02
    vacuous: bool | None = None
    time_s: dict[str, float]
    settings: dict[str, Any] | None = None
    code: CodeRecord | None = None  # absent in certificates before 2026-12-02 (genlab's own models only)
    original: OriginalRecord | None = None  # certified after the fact: the network the predictor was fitted to


def parse_certificate(values: Any, source: str) -> Certificate:
    """The certificate ``values`` (parsed JSON) as a :class:`Certificate`, or one line naming the bad field."""
    if not isinstance(values, dict) or values.get("format") != FORMAT:
        raise CertificateError(f"{source} is not a genlab certificate (format {FORMAT!r} expected)")
    try:
        cert = Certificate.model_validate(values)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or "certificate"
        what = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
        raise CertificateError(f"{source}: field {where}: {what}{more}; not a well-formed certificate") from None
    for name, value in (("message_file", cert.message_file), ("prior.file", cert.prior.file)):
        if value is not None and (value in ("", ".", "..") or "/" in value or "\\" in value):
            raise CertificateError(f"{source}: field {name} must name a file in the certificate's directory "
                                   f"(got {value!r})")
    if cert.buffers is not None and cert.buffers.source == "prior" and cert.prior.kind != "trained":
        raise CertificateError(f"{source}: field buffers: source prior needs a trained prior centre")
    if set(cert.bounds) != set(BOUND_KEYS):
        raise CertificateError(f"{source}: field bounds must hold exactly {', '.join(BOUND_KEYS)}")
    if any(not v for v in cert.grid.values()):
        raise CertificateError(f"{source}: field grid: every entry must be a non-empty list of declared values")
    if (cert.prior.kind == "init") != (cert.prior.file is None and cert.prior.sha256 is None and cert.prior.split == 0):
        raise CertificateError(f"{source}: field prior: an init prior has split 0 and no file; a trained one a "
                               f"split, a file and its sha256")
    if (cert.prior.kind == "transfer") != (cert.prior.dataset is not None) or (
            cert.prior.kind == "transfer" and (cert.prior.split != 0 or cert.prior.dataset == cert.data.name)):
        raise CertificateError(f"{source}: field prior: a transfer prior has split 0 and names another dataset "
                               f"than the one bounded; other priors name none")
    return cert


def predictor_choices(cert: Certificate) -> dict[str, Any]:
    """The recorded choices the predictor itself shows, with the values the certificate's own fields give them."""
    return {"model": cert.model.name, "dataset": cert.data.name, "seed": cert.model.seed,
            "intrinsic_dim": cert.projection.d, "projection": cert.projection.kind,
            "projection_scale": cert.projection.scale, "quant_levels": cert.quantization.levels,
            "symbol_model": cert.quantization.symbol_model,
            "prior_split": cert.prior.split if cert.prior.kind == "trained" else None,
            "prior_dataset": cert.prior.dataset}
