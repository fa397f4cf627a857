"""Every field of a certificate is recomputed, cross-checked or declared recorded-only: an edit of any field a
reader relies on fails verification (exit 1); a malformed certificate is bad input (exit 2)."""

from __future__ import annotations

import json
import shutil

import pytest

from genlab.bounds.compression.certificate import VerificationError
from genlab.bounds.compression.coding import MessageError
from genlab.bounds.compression.pipeline import BoundConfig, compression_bound
from genlab.bounds.compression.record import RECORDED_ONLY, CertificateError
from genlab.bounds.compression.verify import verify
from genlab.cli import main


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cert") / "digits"
    compression_bound(BoundConfig(dataset="digits", model="mlp", width=16, intrinsic_dim=50, epochs=3,
                                  quant_levels=5, qat_epochs=1, lr=0.05), out, quiet=True)
    return out


def _edited(cert_dir, tmp_path, edit):
    target = tmp_path / "edited"
    shutil.copytree(cert_dir, target, ignore=shutil.ignore_patterns("subspace", "quantized"))
    values = json.loads((target / "certificate.json").read_text())
    edit(values)
    (target / "certificate.json").write_text(json.dumps(values))
    return target


def _set(path, value):
    def edit(values):
        *parents, last = path.split(".")
        node = values
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is _DELETE:
            del node[last]
        else:
            node[int(last) if isinstance(node, list) else last] = value(node[int(last) if isinstance(node, list)
                                                                             else last]) if callable(value) else value
    return edit


_DELETE = object()

# field edits that keep the certificate well formed: each must fail verification, naming what differs
MISMATCHES = [
    ("train_error", 0.01, "train_error"),
    ("train_errors", lambda v: v - 1, "train_errors"),
    ("test_error", 0.001, "test_error"),
    ("test_errors", lambda v: v + 1, "test_errors"),
    ("total_bits", lambda v: v - 10, "total_bits"),
    ("grid_bits", lambda v: v - 1, "grid_bits"),
    ("hyperparameter_bits", lambda v: v - 1, "hyperparameter_bits"),
    ("message_bits", lambda v: v - 8, "message_bits"),
    ("bound", lambda v: v / 2, "bound"),
    ("bounds.catoni_grid", lambda v: v / 2, "bounds.catoni_grid"),
    ("delta", 0.5, "bounds"),
    ("quantization.codebook.0", lambda v: v + 0.5, "codebook"),
    ("data.seed", 7, "data.seed"),
    ("data.n_train_total", lambda v: v + 1, "training points"),
    ("preprocessing.normalisation", "none", "normalisation"),
    ("preprocessing.bits", 0, "preprocessing.bits"),
    ("projection.covered_parameters", lambda v: v - 1, "covered"),
    ("choices.intrinsic_dim", 100, "choices.intrinsic_dim"),
    ("choices.quant_levels", 7, "choices.quant_levels"),
    ("choices.projection", "dense", "choices.projection"),
    ("choices.model", "cnn", "choices.model"),
    ("grid.intrinsic_dim", [25, 100], "grid intrinsic_dim"),
    ("message_sha256", "0" * 64, "SHA-256"),
    ("theta0_sha256", "0" * 64, "theta0"),
    ("vacuous", lambda v: not v, "vacuous"),
    ("constant_predictor_error", 0.5, "constant_predictor_error"),
]


@pytest.mark.parametrize("path, value, needle", MISMATCHES, ids=[m[0] for m in MISMATCHES])
def test_an_edited_field_does_not_verify(cert_dir, tmp_path, path, value, needle):
    target = _edited(cert_dir, tmp_path, _set(path, value))
    with pytest.raises((VerificationError, MessageError)) as err:
        verify(target)
    assert needle in str(err.value)


MALFORMED = [
    ("train_error", _DELETE, "field train_error: Field required"),
    ("verified", True, "field verified: unknown field"),
    ("bounds.tightest", 0.01, "field bounds must hold exactly"),
    ("train_errors", "639", "field train_errors: Input should be a valid integer"),
    ("delta", 1.5, "field delta"),
    ("message_file", "../other/message.bin", "must name a file in the certificate's directory"),
    ("message_file", "/etc/passwd", "must name a file in the certificate's directory"),
    ("projection.d", 2 * 10 ** 8, "field projection.d"),
    ("model.width", 10 ** 7, "field model.width"),
    ("model.input_shape", [1, 100000, 100000], "not a plausible input shape"),
    ("quantization.levels", 1000, "field quantization.levels"),
    ("prior.kind", "trained", "field prior"),
    ("data.seed", True, "field data.seed"),
    ("format", "genlab-certificate-0", "is not a genlab certificate"),
]


@pytest.mark.parametrize("path, value, needle", MALFORMED, ids=[f"{m[0]}={m[1]!r}"[:40] for m in MALFORMED])
def test_a_malformed_certificate_is_bad_input(cert_dir, tmp_path, capsys, path, value, needle):
    target = _edited(cert_dir, tmp_path, _set(path, value))
    with pytest.raises(CertificateError) as err:
        verify(target)
    assert needle in str(err.value)
    assert main(["verify", str(target)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("genlab: error: ")


def test_oversized_network_refused_before_it_is_built(cert_dir, tmp_path):
    """A width the schema allows but a network of more than 10^8 parameters: refused without allocating it."""
    target = _edited(cert_dir, tmp_path, _set("model.width", 2 ** 20))
    with pytest.raises(CertificateError, match="more than the 100,000,000 a verifier builds"):
        verify(target)


def test_the_intact_certificate_verifies_and_says_what_is_recorded_only(cert_dir, tmp_path):
    figures = verify(cert_dir)
    # not certified after the fact, no prior centre
    assert set(figures["recorded_only"]) == set(RECORDED_ONLY) - {"original.source", "prior.run", "prior.dataset"}
    # recorded-only fields are not checked: an edit of one still verifies (and the report says so)
    target = _edited(cert_dir, tmp_path, _set("time_s.total", 1.0))
    assert verify(target)["bound"] == figures["bound"]


def test_a_message_outside_the_directory_is_never_read(cert_dir, tmp_path):
    target = _edited(cert_dir, tmp_path, lambda v: None)
    (target / "message.bin").unlink()
    (target / "message.bin").symlink_to(cert_dir / "message.bin")
    with pytest.raises(VerificationError, match="beside certificate.json"):
        verify(target)


def test_a_vacuous_bound_says_so_everywhere(tmp_path, capsys):
    """A predictor barely trained: its bound is not below the error of always predicting the most frequent class,
    and the certificate, `genlab bound`, `genlab verify` and the report say it is vacuous."""
    from genlab.report import build_report

    out = tmp_path / "poor"
    assert main(["bound", "--out", str(out), "--dataset", "digits", "--model", "mlp", "--width", "8",
                 "--intrinsic-dim", "25", "--epochs", "1", "--lr", "0.0001", "--quant-levels", "2",
                 "--qat-epochs", "1", "--qat-lr", "0.0001", "--quiet"]) == 0
    line = capsys.readouterr().out
    cert = json.loads((out / "certificate.json").read_text())
    assert cert["vacuous"] is True and cert["bound"] >= cert["constant_predictor_error"] > 0.85
    assert "VACUOUS: not below the" in line
    assert main(["verify", str(out)]) == 0 and "VACUOUS" in capsys.readouterr().out
    assert "This bound is vacuous" in build_report(out).read_text()


def test_a_rerun_keeps_each_stage_time(cert_dir, tmp_path):
    first = json.loads((cert_dir / "certificate.json").read_text())["time_s"]
    again = compression_bound(BoundConfig(dataset="digits", model="mlp", width=16, intrinsic_dim=50, epochs=3,
                                          quant_levels=5, qat_epochs=1, lr=0.05), cert_dir, quiet=True)["time_s"]
    assert again["subspace_training"] == first["subspace_training"] > 0    # reused: its own time, not ~0
    assert again["quantization"] == first["quantization"] > 0
