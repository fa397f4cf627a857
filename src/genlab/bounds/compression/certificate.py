"""Certificates: a compression bound that anyone can re-check from two files.

:func:`certify` takes a finished quantization-aware run (a :class:`~genlab.bounds.compression.subspace.SubspaceModel`
with a codebook), writes ``message.bin`` (the quantized coordinates, see
:mod:`~genlab.bounds.compression.coding`) and ``certificate.json``, which holds everything else the predictor
depends on: data identity (name, settings, content hash), model spec and seed of ``theta0`` (or the file of a prior
centre trained on a declared split, with its SHA-256), the projection (kind, d, seed, groups, row scale), the codebook size and
symbol model, the declared hyper-parameter grid and its bit cost, ``delta``, the exact empirical error of the
decoded predictor on the bound's training points, the message bits, every bound value, the one reported (declared
before computing) and the test error (for information).

The predictor certified is rebuilt *from the certificate and the message alone* (:func:`rebuild_predictor`), both
when certifying and when verifying: the numbers are those of the decoded predictor, never of the trained model.
:func:`~genlab.bounds.compression.verify.verify` re-checks every field (:mod:`~genlab.bounds.compression.record`
says how each is checked) and raises :class:`VerificationError` on any mismatch.

What the bound charges (Occam, point mass, prior ``P(h) = 2^-(message bits) / |grid| * 2^-preprocessing``):

- ``message_bits`` = ``8 * len(message.bin)`` (a prefix-free code, so a valid prior by Kraft): the quantized
  coordinates and, for a model with buffers (BatchNorm running statistics), every buffer
  (:mod:`~genlab.bounds.compression.buffers`);
- ``hyperparameter_bits`` = ``log2`` of the number of configurations in the declared grid (a uniform prior over
  them: the union bound for having searched them) plus ``PREPROCESSING_BITS`` for the two input-normalisation
  statistics (mean and standard deviation, 32 bits each), which are computed from training data -- or nothing
  for a data-dependent bound whose inputs are standardised on the prior split (:func:`preprocessing_bits`).
"""

from __future__ import annotations

import hashlib
import math
import platform
import time
from pathlib import Path
from typing import Any

import torch

from genlab.bounds.compression.buffers import BUFFER_LEVELS, buffer_record, decode_buffers, encode_buffers
from genlab.bounds.compression.coding import SYMBOL_MODELS, MessageError, decode_chunk, encode_message, message_bits
from genlab.bounds.compression.quantize import stored_codebook
from genlab.bounds.compression.record import BOUND_NAMES, FORMAT
from genlab.bounds.compression.subspace import ProjectionSpec, SubspaceModel
from genlab.bounds.kl import all_bounds
from genlab.errors import ConfigError, GenlabError

PREPROCESSING_BITS = 64
# The grid every certificate declares unless told otherwise: the choices genlab's own searches range over.
DEFAULT_GRID: dict[str, list] = {
    "intrinsic_dim": [25, 50, 100, 150, 250, 350, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 16000],
    "quant_levels": [2, 3, 4, 5, 6, 7, 8, 9, 11, 13, 15, 17],
    "projection": ["sparse", "kron", "dense"],
    "symbol_model": list(SYMBOL_MODELS),
}


def preprocessing_bits(normalise_first: int | None, prior_split: int, dataset: str) -> int:
    """Bits the certificate charges for the input normalisation: :data:`PREPROCESSING_BITS` (two float32
    statistics computed from training data that include the bound's points), or 0 when the inputs are
    standardised with the statistics of the first ``normalise_first <= prior_split`` points of a genlab dataset.

    Why 0 is valid: the bound is on the points after the prior split; statistics of points before it are a
    function of the prior's sample, like the prior centre itself, so the hypothesis still depends on the bound's
    points only through the message. genlab's own loaders normalise by per-channel affine maps, which the
    per-channel standardisation cancels (:func:`~genlab.data.transforms.standardise_on_first`); a user's dataset
    factory may preprocess in ways genlab cannot see, so it is always charged. Whether ``dataset`` is genlab's
    is read from this process's registry (never from the certificate, which could be edited).
    """
    from genlab.data import DATASETS

    own_dataset = dataset in DATASETS and DATASETS[dataset].factory is None
    free = normalise_first is not None and 0 < prior_split and normalise_first <= prior_split and own_dataset
    return 0 if free else PREPROCESSING_BITS


class VerificationError(GenlabError):
    """A certificate does not check out: its message, data, predictor or numbers differ from what it claims."""

    exit_code = 1


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensor_sha256(t: torch.Tensor) -> str:
    return sha256_bytes(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())


def grid_bits(grid: dict[str, list]) -> float:
    """``log2`` of the number of configurations in a declared grid."""
    return float(sum(math.log2(len(v)) for v in grid.values()))


def check_choices_in_grid(choices: dict[str, Any], grid: dict[str, list]) -> None:
    """Every grid key must be a known choice and its value one of the declared values."""
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid {key}: must be a non-empty list of declared values")
        if key not in choices:
            raise ConfigError(f"grid {key}: not a choice this certificate makes; choices: {', '.join(choices)}")
        if choices[key] not in values:
            raise ConfigError(f"grid {key}: the value used ({choices[key]!r}) is not among the declared values "
                              f"{values}; declare it (it costs bits) or change the run")


# --------------------------------------------------------------------------- rebuilding the predictor
def model_spec(train_config, data) -> dict[str, Any]:
    """The architecture a training config builds on ``data``, in the certificate's ``model`` form (less the seed)."""
    m = train_config.model
    return {"name": m.name, "width": m.width, "depth": m.depth, "activation": m.activation, "dropout": m.dropout,
            "batchnorm": m.batchnorm, "options": dict(m.model_options), "input_shape": list(data.input_shape),
            "output_dim": data.output_dim}


def build_architecture(spec: dict[str, Any]) -> torch.nn.Module:
    """The network a certificate's ``model`` field names (PyTorch's default initialisation, from the global
    seed): the one place a certificate's architecture becomes a module."""
    from genlab.models import build_model

    return build_model(spec["name"], tuple(spec["input_shape"]), spec["output_dim"], width=spec["width"],
                       depth=spec["depth"], dropout=spec["dropout"], activation=spec["activation"],
                       batchnorm=spec["batchnorm"], **spec["options"])


def build_base(cert: dict[str, Any], prior_state: dict[str, torch.Tensor] | None) -> torch.nn.Module:
    """The base network with parameters ``theta0``: seeded initialisation, or the prior centre's weights."""
    spec = cert["model"]
    torch.manual_seed(spec["seed"])
    base = build_architecture(spec).to(torch.float32)
    if prior_state is not None:   # the prior centre's parameters (and buffers when they are the prior's)
        buffers = {name for name, _ in base.named_buffers()}
        if (cert.get("buffers") or {}).get("source") == "prior" and not buffers <= set(prior_state):
            raise VerificationError(f"the certificate keeps the prior centre's buffers, but its file lacks "
                                    f"{sorted(buffers - set(prior_state))[:3]}")
        try:
            missing, unexpected = base.load_state_dict(prior_state, strict=False)
        except RuntimeError as err:
            raise VerificationError(f"the prior centre's weights do not fit the model ({err})") from None
        if unexpected or set(missing) - buffers:
            raise VerificationError(f"the prior centre's weights do not fit the model (missing "
                                    f"{sorted(set(missing) - buffers)}, unexpected {sorted(unexpected)})")
    return base


def decode_predictor(message: bytes, cert: dict[str, Any], model: SubspaceModel):
    """``(symbols, codebook, buffers)``: the whole message decoded for ``model``'s shapes (the coordinates'
    chunk, then the buffers, :mod:`~genlab.bounds.compression.buffers`), with nothing left over.

    Raises:
        MessageError: the message is truncated, corrupt or followed by extra bytes.
    """
    p, q = cert["projection"], cert["quantization"]
    symbols, codebook, end = decode_chunk(message, 0, p["d"], q["levels"], q["symbol_model"])
    record = cert.get("buffers") or {}
    templates = {} if record.get("source") == "prior" else model.buffers_of_base()
    buffers, end = decode_buffers(message, end, templates, record.get("levels", BUFFER_LEVELS), q["symbol_model"])
    if end != len(message):
        raise MessageError(f"message is followed by {len(message) - end} extra bytes after its last part")
    return symbols, codebook, buffers


def rebuild_predictor(cert: dict[str, Any], message: bytes,
                      prior_state: dict[str, torch.Tensor] | None = None) -> SubspaceModel:
    """The certified predictor, from the certificate and message alone (eval mode, CPU, float32): ``w`` and every
    buffer decoded from the message.

    Raises:
        MessageError: the message does not decode.
        VerificationError: ``theta0`` rebuilt here differs from the certificate's hash, the model's buffers are
            not those the certificate names, or the message's codebook is not the certificate's.
    """
    p = cert["projection"]
    q = cert["quantization"]
    model = SubspaceModel(build_base(cert, prior_state), ProjectionSpec(p["kind"], p["d"], p["seed"],
                                                                         tuple(p["groups"]), p.get("scale", "none")))
    if tensor_sha256(model.theta0) != cert["theta0_sha256"]:
        raise VerificationError(
            f"theta0 rebuilt here differs from the one certified (SHA-256 mismatch); the certificate was made with "
            f"torch {cert['environment']['torch']}, this is torch {torch.__version__}")
    named = (cert.get("buffers") or {}).get("names", [])
    if named != model.buffer_names:
        raise VerificationError(f"the model built here has buffers {model.buffer_names or 'none'}; the certificate "
                                f"codes {named or 'none'}")
    symbols, codebook, buffers = decode_predictor(message, cert, model)
    if [float(v) for v in codebook] != q["codebook"]:
        raise VerificationError("quantization.codebook differs from the codebook the message holds")
    with torch.no_grad():
        model.w.copy_(codebook[symbols])
    if buffers:
        model.set_buffers(buffers)
    return model.eval()


def predictions(model: torch.nn.Module, x: torch.Tensor, chunk: int = 2000) -> torch.Tensor:
    """The predicted class (argmax of the outputs) of every row of ``x``, in chunks, without gradients."""
    with torch.no_grad():
        return torch.cat([model(x[i: i + chunk]).argmax(1) for i in range(0, len(x), chunk)])


def count_errors(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, chunk: int = 2000) -> int:
    """Misclassified points (argmax of the outputs against integer labels)."""
    return int((predictions(model, x, chunk) != labels).sum())


def class_labels(y: torch.Tensor) -> torch.Tensor:
    """Class indices of targets given as indices or as one-hot rows."""
    return y.argmax(1) if y.dim() == 2 else y.long()


def load_certificate_data(cert: dict[str, Any], data_dir: str | None = None):
    """The dataset a certificate names, checked against its content hash."""
    from genlab.data import load_dataset
    from genlab.train.run import data_fingerprint

    d = cert["data"]
    data = load_dataset(d["name"], n_train=d["n_train"], label_noise=d["label_noise"], loss=d["loss"],
                        seed=d["seed"], data_dir=data_dir, options=dict(d["options"]),
                        normalise_first=d.get("normalise_first"))
    if data_fingerprint(data) != d["sha256"]:
        raise VerificationError(f"the {d['name']} data found here differs from the data certified (content hash "
                                f"{data_fingerprint(data)} vs {d['sha256']}); point --data-dir at the same files")
    return data


def evaluate_certificate(cert: dict[str, Any], message: bytes, data, model: torch.nn.Module) -> dict[str, Any]:
    """Errors of the decoded predictor ``model`` (:func:`rebuild_predictor`) and every bound, as the certificate
    states them."""
    split = cert["prior"]["split"]
    x, y = data.x_train[split:], class_labels(data.y_train[split:])
    n = len(x)
    train_errors = count_errors(model, x, y)
    test_errors = count_errors(model, data.x_test, class_labels(data.y_test))
    bits = message_bits(message)
    total_bits = bits + cert["hyperparameter_bits"]
    bounds = all_bounds(train_errors / n, total_bits, n, cert["delta"])
    bound = bounds[cert["reported_bound"]]
    # the best constant predictor (always the most frequent class of the bound's points): a bound at or above
    # its error says nothing about the network
    constant = 1.0 - float(torch.bincount(y).max()) / n
    return {"n": n, "train_errors": train_errors, "train_error": train_errors / n,
            "test_errors": test_errors, "test_error": test_errors / len(data.x_test),
            "message_bits": bits, "total_bits": total_bits, "bounds": bounds, "bound": bound,
            "constant_predictor_error": constant, "vacuous": bound >= constant}


# --------------------------------------------------------------------------- certify
def certify(run_dir: str | Path, out: str | Path, *, delta: float = 0.05, grid: dict[str, list] | None = None,
            choices: dict[str, Any] | None = None, symbol_model: str = "adaptive", reported_bound: str = "occam_kl",
            data_dir: str | None = None, stage_times: dict[str, float] | None = None,
            settings: dict[str, Any] | None = None, buffer_levels: int = BUFFER_LEVELS,
            original: str | None = None) -> dict[str, Any]:
    """Certify the predictor of a finished quantization-aware run; writes ``certificate.json`` and ``message.bin``.

    Args:
        run_dir: a complete run trained with ``intrinsic_dim`` and ``quant_levels``.
        out: directory for the certificate, the message (and ``prior.safetensors`` for a data-dependent bound).
        delta: the bound's failure probability.
        grid: the declared hyper-parameter grid (name -> list of values); default :data:`DEFAULT_GRID`.
        choices: values of every choice the grid may name (the run's own settings are added).
        symbol_model: ``adaptive`` or ``two-part`` (see :mod:`~genlab.bounds.compression.coding`).
        reported_bound: which bound is *the* bound, declared before computing: one of :data:`BOUND_NAMES`.
        stage_times: seconds of the training stages before this call (``genlab bound``); with them ``time_s``
            holds every stage, coding, evaluation and their total.
        settings: the pipeline settings, recorded as ``settings``.
        buffer_levels: evenly spaced levels of each buffer (BatchNorm statistics) the message codes, see
            :mod:`~genlab.bounds.compression.buffers`.
        original: where the network certified after the fact came from (``genlab bound --from-model``): its
            weights lie in ``out/original.safetensors``; the certificate records its test error and how often
            it agrees with the certified predictor (:mod:`~genlab.bounds.compression.original`).

    A run with ``subspace_prior`` gives a data-dependent bound: the prior run must have been trained on the first
    ``m`` training points only (``n_train = m``), and the bound is on the other ``n - m``. A prior run on
    another dataset (``genlab bound --prior-dataset``) is a transfer prior: independent of this sample, so the
    bound is on all ``n`` points (``prior.kind`` ``transfer``, ``prior.dataset`` its dataset).

    Returns the certificate (also written to ``out/certificate.json``).
    """
    from genlab.train.run import data_fingerprint, load_run, read_run_config

    t0 = time.perf_counter()
    if reported_bound not in BOUND_NAMES:
        raise ConfigError(f"reported bound {reported_bound!r} unknown; allowed: {', '.join(BOUND_NAMES)}")
    if symbol_model not in SYMBOL_MODELS:
        raise ConfigError(f"symbol model {symbol_model!r} unknown; allowed: {', '.join(SYMBOL_MODELS)}")
    if not 0 < delta < 1:
        raise ConfigError(f"delta must lie in (0, 1), got {delta}")
    run = load_run(run_dir, device="cpu")
    config = run.config
    if run.status != "complete":
        raise ConfigError(f"{run_dir}: the run is {run.status}; certify a complete run")
    model = run.model
    if not isinstance(model, SubspaceModel) or model.quantizer is None:
        raise ConfigError(f"{run_dir}: not a quantized subspace run (train it with intrinsic_dim and quant_levels)")
    if not model.quantizer.complete:
        raise ConfigError(f"{run_dir}: its quantizer leaves {int((~model.quantizer.mask).sum())} coordinates of w "
                          f"unquantized (an unfinished progressive run); finish it first")
    if run.data.task != "classification":
        raise ConfigError(f"{run_dir}: compression bounds here are for classification error; {config.data.name} is "
                          f"a regression dataset")
    prior = {"kind": "init", "split": 0, "file": None, "sha256": None}
    prior_state = None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prior_run = config.plugins.subspace.subspace_prior
    if prior_run is not None:
        prior_config = read_run_config(prior_run)
        # a prior centre trained on another dataset (transfer) is independent of this sample: the bound is on
        # all n points; one trained on this dataset must have seen only its first m points
        transfer = prior_config.data.name != config.data.name
        m = 0 if transfer else prior_config.data.n_train
        same = (prior_config.data.label_noise, prior_config.run.seed) == (config.data.label_noise, config.run.seed)
        if not transfer and (m is None or not same or (config.data.n_train is not None and m >= config.data.n_train)):
            raise ConfigError(f"subspace_prior {prior_run}: a data-dependent bound needs a prior trained "
                              f"on the first m < n points of the same dataset (n_train = m), same seed and labels")
        prior_state = {k: v.detach().clone() for k, v in model.unflatten(model.theta0).items()}
        if model.frozen_buffers:   # the prior centre's statistics, kept fixed: part of the prior, not the message
            prior_state.update(_prior_buffers(prior_run, model))
        from genlab.train.checkpoint import save_state_dict

        save_state_dict(out / "prior.safetensors", prior_state, metadata={"format": "genlab-prior-1"})
        prior = {"kind": "transfer" if transfer else "trained", "split": m, "file": "prior.safetensors",
                 "sha256": sha256_bytes((out / "prior.safetensors").read_bytes()), "run": str(prior_run)}
        if transfer:
            prior["dataset"] = prior_config.data.name

    grid = dict(DEFAULT_GRID if grid is None else grid)
    choices = {**_run_choices(config), "symbol_model": symbol_model, **(choices or {})}
    check_choices_in_grid(choices, grid)

    t_code = time.perf_counter()
    codebook = stored_codebook(model.quantizer.codebook)
    symbols = model.quantizer.symbols(model.w)
    if not 2 <= buffer_levels <= 256:
        raise ConfigError(f"buffer_levels must lie in [2, 256], got {buffer_levels}")
    # fixed buffers are the prior centre's (in prior.safetensors): the message codes only trained ones
    coded = {} if model.frozen_buffers else {k: v.detach().cpu() for k, v in model.buffers_of_base().items()}
    message = encode_message(symbols, codebook, symbol_model) + encode_buffers(coded, buffer_levels, symbol_model)
    decoded_symbols, decoded_book, _ = decode_chunk(message, 0, model.spec.d, codebook.numel(), symbol_model)
    if not (torch.equal(decoded_symbols, symbols.cpu()) and torch.equal(decoded_book, codebook)):
        raise GenlabError("internal error: the message does not decode to the quantized coordinates")
    (out / "message.bin").write_bytes(message)
    t_code = time.perf_counter() - t_code

    import numpy

    import genlab
    from genlab.bounds.compression.provenance import code_record

    ds, ms = config.data, config.model
    bits_pre = preprocessing_bits(ds.normalise_first, prior["split"], ds.name)
    cert: dict[str, Any] = {
        "format": FORMAT,
        "data": {"name": ds.name, "n_train": ds.n_train, "label_noise": ds.label_noise,
                 "loss": run.data.loss, "seed": config.run.seed, "options": dict(ds.dataset_options),
                 "sha256": data_fingerprint(run.data), "n_train_total": len(run.data.x_train),
                 "normalise_first": ds.normalise_first},
        "model": {**model_spec(config, run.data), "seed": config.run.seed},
        "projection": model.spec.to_json() | {"covered_parameters": model.covered},
        "theta0_sha256": tensor_sha256(model.theta0),
        "prior": prior,
        "quantization": {"levels": codebook.numel(), "symbol_model": symbol_model,
                         "codebook": [float(v) for v in codebook]},
        "buffers": buffer_record(model.buffer_names, buffer_levels, "prior" if model.frozen_buffers else "message"),
        "preprocessing": {"normalisation": run.data.info.get("normalisation", "dataset default"),
                          "bits": bits_pre},
        "grid": grid,
        "choices": choices,
        "grid_bits": grid_bits(grid),
        "hyperparameter_bits": grid_bits(grid) + bits_pre,
        "delta": delta,
        "reported_bound": reported_bound,
        "message_file": "message.bin",
        "message_sha256": sha256_bytes(message),
        "environment": {"genlab": genlab.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
                        "python": platform.python_version()},
        "code": code_record(ms.name, ds.name),
        "training_run": str(run_dir),
    }
    t_eval = time.perf_counter()
    predictor = rebuild_predictor(cert, message, prior_state)
    cert.update(evaluate_certificate(cert, message, run.data, predictor))
    if original is not None:
        from genlab.bounds.compression.original import original_figures

        cert["original"] = {**original_figures(out, cert["model"], run.data, predictor, prior["split"], class_labels),
                            "source": original}
    times = {"coding": t_code, "evaluation": time.perf_counter() - t_eval}
    if stage_times is None:
        cert["time_s"] = {**times, "certify": time.perf_counter() - t0}
    else:
        cert["time_s"] = {**stage_times, **times, "total": sum(stage_times.values()) + sum(times.values())}
    if settings is not None:
        cert["settings"] = settings
    from genlab.jsonio import write_json_atomic

    write_json_atomic(out / "certificate.json", cert)
    return cert


def _prior_buffers(prior_run: str, model: SubspaceModel) -> dict[str, torch.Tensor]:
    """The prior run's buffers, which a run with fixed buffers must still hold unchanged."""
    from genlab.train.checkpoint import load_state_dict
    from genlab.train.run_dir import RunDir

    state = load_state_dict(RunDir(prior_run).model)
    own = model.buffers_of_base()
    changed = [n for n in model.buffer_names if n not in state or not torch.equal(state[n].to(own[n]), own[n])]
    if changed:
        raise ConfigError(f"subspace_buffers prior: the run's buffers ({changed[0]}, ...) are not the prior "
                          f"centre's; was it trained with them fixed?")
    return {n: own[n].detach().clone() for n in model.buffer_names}


def _run_choices(config) -> dict[str, Any]:
    """The settings of the quantization-aware run (and of the subspace run it started from) a grid may name."""
    from genlab.train.run import read_run_config

    choices = {k: v for k, v in config.flat().items() if isinstance(v, (int, float, str, bool)) or v is None}
    choices["qat_epochs"], choices["qat_lr"] = config.run.epochs, config.optimizer.lr
    if config.plugins.init.init_from is not None:
        first = read_run_config(config.plugins.init.init_from)
        choices["epochs"], choices["lr"] = first.run.epochs, first.optimizer.lr
        choices["optimizer"], choices["subspace_noise"] = first.optimizer.name, first.plugins.subspace.subspace_noise
    return choices
