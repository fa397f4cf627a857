"""Compression bounds: projections against explicit matrices, the subspace model, quantization, the coder,
certificates and their verification (including tampered and truncated messages)."""

import json
import math
import os
import shutil
import signal

import pytest
import torch

from genlab.bounds.compression.certificate import DEFAULT_GRID, PREPROCESSING_BITS, VerificationError, grid_bits
from genlab.bounds.compression.verify import verify
from genlab.bounds.compression.coding import (MessageError, decode_message, decode_varint, encode_message,
                                              encode_varint)
from genlab.bounds.compression.pipeline import BoundConfig, compression_bound
from genlab.bounds.compression.quantize import (Quantizer, init_codebook, nearest, progressive_fraction,
                                                stored_codebook)
from genlab.bounds.compression.subspace import Projection, ProjectionSpec, SubspaceModel
from genlab.bounds.kl import occam_bound
from genlab.config import TrainConfig
from genlab.errors import ConfigError, DataError
from genlab.train import train


def explicit(proj: Projection) -> torch.Tensor:
    """P as a dense matrix, column by column from basis vectors (the reference for every kind)."""
    eye = torch.eye(proj.d, dtype=torch.float64)
    return torch.stack([proj(eye[j]) for j in range(proj.d)], dim=1)


@pytest.mark.parametrize("kind", ["dense", "sparse", "kron"])
def test_projection_is_linear_seeded_and_unit_columns(kind):
    p = Projection(kind, 3000, 40, seed=7)
    matrix = explicit(p)
    w = torch.randn(40, dtype=torch.float64)
    assert torch.allclose(p(w), matrix @ w, atol=1e-10)
    again = explicit(Projection(kind, 3000, 40, seed=7))
    assert torch.equal(matrix, again)                       # a pure function of the seed
    assert not torch.equal(matrix, explicit(Projection(kind, 3000, 40, seed=8)))
    norms = matrix.norm(dim=0)
    assert abs(float(norms.pow(2).mean()) - 1) < 0.15       # unit columns in expectation


def test_kron_projection_is_the_kronecker_product():
    p = Projection("kron", 50, 7, seed=1)
    full = torch.kron(p.left.double(), p.right.double())[:50]          # (D1 D2 x d1 d2), truncated to D
    w = torch.randn(7, dtype=torch.float64)
    padded = torch.cat([w, torch.zeros(p.d1 * p.d2 - 7, dtype=torch.float64)])
    assert torch.allclose(p(w), full @ padded, atol=1e-12)


def small_base():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()


def test_subspace_model_matches_base_and_its_gradient_is_pt_grad():
    base = small_base()
    x, y = torch.randn(20, 5, dtype=torch.float64), torch.randint(0, 3, (20,))
    model = SubspaceModel(base, ProjectionSpec("dense", 6, seed=3))
    assert [n for n, _ in model.named_parameters()] == ["w"]
    assert torch.allclose(model(x), base(x))                            # w = 0: theta = theta0
    with torch.no_grad():
        model.w.normal_()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    (g_w,) = torch.autograd.grad(loss, model.w)
    # reference: the full-space gradient at theta, pulled back by the explicit P
    theta = model.theta().detach().requires_grad_(True)
    params, offset = {}, 0
    for name, shape, numel in model.shapes:
        params[name] = theta[offset: offset + numel].view(shape)
        offset += numel
    full = torch.nn.functional.cross_entropy(torch.func.functional_call(base, params, (x,)), y)
    (g_theta,) = torch.autograd.grad(full, theta)
    assert torch.allclose(g_w, explicit(model.projection).T @ g_theta, atol=1e-10)


def test_projection_groups_leave_other_parameters_at_theta0():
    base = small_base()
    model = SubspaceModel(base, ProjectionSpec("sparse", 4, seed=0, groups=("2.",)))
    assert model.covered == 8 * 3 + 3
    with torch.no_grad():
        model.w.normal_()
    params = model.base_params()
    assert torch.equal(params["0.weight"], base[0].weight) and torch.equal(params["0.bias"], base[0].bias)
    assert not torch.equal(params["2.weight"], base[2].weight)
    with pytest.raises(ConfigError, match="match no parameter"):
        SubspaceModel(small_base(), ProjectionSpec("sparse", 4, seed=0, groups=("conv",)))


def test_fan_in_scale_moves_each_layer_by_one_over_sqrt_fan_in():
    base = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(8, 3))
    plain = SubspaceModel(base, ProjectionSpec("dense", 5, seed=1))
    scaled = SubspaceModel(base, ProjectionSpec("dense", 5, seed=1, scale="fan-in"))
    w = torch.randn(5)
    step_plain, step_scaled = plain.theta(w) - plain.theta0, scaled.theta(w) - scaled.theta0
    # conv weight and bias: fan-in 1*3*3 = 9; linear weight and bias: fan-in 8
    expect = torch.cat([torch.full((18 + 2,), 9 ** -0.5), torch.full((24 + 3,), 8 ** -0.5)])
    expect = expect / expect.square().mean().sqrt()
    assert torch.allclose(step_scaled, step_plain * expect, atol=1e-6)
    assert torch.isclose(scaled.row_scale.square().mean(), torch.tensor(1.0))
    with pytest.raises(ConfigError, match="allowed: none, fan-in"):
        ProjectionSpec("dense", 5, seed=1, scale="layer")


def test_quantizer_straight_through_and_codebook_gradients():
    q = Quantizer(torch.tensor([-1.0, 0.0, 1.0]))
    w = torch.tensor([-0.9, -0.2, 0.4, 0.8, 3.0], requires_grad=True)
    out = q(w)
    assert torch.equal(out.detach(), torch.tensor([-1.0, 0.0, 0.0, 1.0, 1.0]))
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    (out * upstream).sum().backward()
    assert torch.equal(w.grad, upstream)                                  # straight through
    assert torch.equal(q.codebook.grad, torch.tensor([1.0, 5.0, 9.0]))    # summed over assigned coordinates


def test_progressive_quantization_grows_the_mask_nearest_first():
    q = Quantizer(torch.tensor([-1.0, 0.0, 1.0]), d=4)
    q.mask.zero_()
    w = torch.tensor([0.45, -0.9, 0.1, 0.7], requires_grad=True)
    assert torch.equal(q(w), w)                                   # nothing quantized yet: floats pass through
    assert q(torch.tensor([3.0, -2.0, 0.5, 0.0])).tolist() == [1.0, -1.0, 0.5, 0.0]   # within the codebook range
    q.quantize_more(w, 0.5)                                       # rounding errors .45 .1 .1 .3: the two .1s
    assert q.mask.tolist() == [False, True, True, False]
    out = q(w)
    assert out.tolist() == pytest.approx([0.45, -1.0, 0.0, 0.7])
    out.sum().backward()
    assert w.grad.tolist() == [1.0] * 4                           # straight through for every coordinate
    assert q.codebook.grad.tolist() == [1.0, 1.0, 0.0]            # only quantized coordinates pull the codebook
    q.quantize_more(w, 0.25)                                      # never shrinks
    assert int(q.mask.sum()) == 2 and not q.complete
    q.quantize_more(w, 1.0)
    assert q.complete and q(w).tolist() == pytest.approx([0.0, -1.0, 0.0, 1.0])
    assert [progressive_fraction(s, 100, 4) for s in (0, 24, 25, 50, 74, 75, 99, 100)] == \
        [0.5, 0.5, 0.75, 0.875, 0.875, 1.0, 1.0, 1.0]
    assert progressive_fraction(0, 10, 1) == 1.0
    # a state saved before the mask existed loads as fully quantized
    old = Quantizer(torch.tensor([-1.0, 0.0, 1.0]), d=4)
    old.mask.zero_()
    old.load_state_dict({"codebook": torch.tensor([-2.0, 0.0, 2.0])})
    assert old.complete and old.codebook.tolist() == [-2.0, 0.0, 2.0]


def test_codebook_init_finds_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([-2.0, 0.5, 3.0])
    w = torch.cat([c + 0.05 * torch.randn(300, generator=g) for c in centres])
    assert torch.allclose(init_codebook(w, 3, "kmeans").float(), centres, atol=0.02)
    assert init_codebook(w, 3).dtype == w.dtype and init_codebook(w.double(), 3).dtype == torch.float64
    quant = init_codebook(w, 3, "quantiles")
    assert quant.shape == (3,) and bool((quant[1:] > quant[:-1]).all())
    assert torch.equal(nearest(torch.tensor([0.2, 2.9]), centres), torch.tensor([1, 2]))
    with pytest.raises(ConfigError):
        init_codebook(w, 3, "median")


def test_varint_is_prefix_free_and_satisfies_kraft():
    for value in (0, 1, 127, 128, 300, 2 ** 40):
        code = encode_varint(value)
        assert decode_varint(code + b"\x07junk") == (value, len(code))
    # Kraft sum over all lengths a varint can announce, per announced length k bytes: sum_k 2^-(8 |varint(k)|)
    assert sum(2.0 ** (-8 * len(encode_varint(k))) for k in range(2 ** 16)) <= 1.0
    with pytest.raises(MessageError):
        decode_varint(b"\x80\x80")


@pytest.mark.parametrize("model", ["adaptive", "two-part"])
def test_message_round_trip_and_length_near_entropy(model):
    g = torch.Generator().manual_seed(1)
    probs = torch.tensor([0.1, 0.2, 0.4, 0.2, 0.1])
    symbols = torch.multinomial(probs, 3000, replacement=True, generator=g)
    book = stored_codebook(torch.tensor([-0.31, -0.1, 0.0, 0.12, 0.29]))
    message = encode_message(symbols, book, model)
    got, got_book = decode_message(message, 3000, 5, model)
    assert torch.equal(got, symbols) and torch.equal(got_book, book)
    counts = torch.bincount(symbols, minlength=5).double() / 3000
    entropy_bits = float(-(counts * counts.log2()).sum()) * 3000
    assert entropy_bits < 8 * len(message) < entropy_bits + 200          # codebook 80 bits, prefix, model cost


def test_truncated_or_padded_message_is_refused():
    symbols = torch.randint(0, 4, (500,), generator=torch.Generator().manual_seed(0))
    message = encode_message(symbols, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(MessageError, match="truncated"):
        decode_message(message[:-3], 500, 4)
    with pytest.raises(MessageError, match="extra bytes"):
        decode_message(message + b"\x00", 500, 4)
    with pytest.raises(MessageError, match="truncated"):
        decode_message(message[:2], 500, 4)


# --------------------------------------------------------------------------- certificates end to end
@pytest.fixture(scope="module")
def tiny_bound(tmp_path_factory):
    """A real pipeline on digits: subspace training, QAT, coding, certificate (a few seconds)."""
    out = tmp_path_factory.mktemp("bound") / "digits"
    settings = BoundConfig(dataset="digits", model="mlp", width=32, intrinsic_dim=50, epochs=8, quant_levels=5,
                           qat_epochs=2, lr=0.05, batch_size=64)
    cert = compression_bound(settings, out, quiet=True)
    return out, cert


def test_certificate_keys_and_bound_by_hand(tiny_bound):
    out, cert = tiny_bound
    for key in ("n", "delta", "train_error", "test_error", "message_bits", "hyperparameter_bits", "bound", "bounds"):
        assert key in cert
    assert cert["message_bits"] == 8 * (out / "message.bin").stat().st_size
    assert cert["hyperparameter_bits"] == pytest.approx(grid_bits(DEFAULT_GRID) + PREPROCESSING_BITS)
    expected = occam_bound(cert["train_errors"] / cert["n"], cert["message_bits"] + cert["hyperparameter_bits"],
                           cert["n"], 0.05)
    assert cert["bound"] == expected == cert["bounds"]["occam_kl"]
    assert cert["train_error"] <= cert["bound"] < 0.9                    # non-vacuous on digits
    assert set(cert["time_s"]) >= {"subspace_training", "quantization", "coding", "evaluation", "total"}
    assert cert["data"]["sha256"] and cert["projection"]["kind"] == "sparse" and cert["projection"]["d"] == 50


def test_verify_passes_and_catches_tampering(tiny_bound, tmp_path):
    out, cert = tiny_bound
    assert verify(out)["bound"] == cert["bound"]
    for name, change in {
        "flipped": lambda m: m[:-5] + bytes([m[-5] ^ 0x5A]) + m[-4:],
        "truncated": lambda m: m[:-6],
    }.items():
        copy = tmp_path / name
        shutil.copytree(out, copy, ignore=shutil.ignore_patterns("subspace", "quantized"))
        message = (copy / "message.bin").read_bytes()
        (copy / "message.bin").write_bytes(change(message))
        with pytest.raises((VerificationError, MessageError)):
            verify(copy)
    # a certificate that claims fewer errors (or a smaller bound) than its predictor makes
    copy = tmp_path / "edited"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("subspace", "quantized"))
    data = json.loads((copy / "certificate.json").read_text())
    data["train_errors"] -= 1
    (copy / "certificate.json").write_text(json.dumps(data))
    with pytest.raises(VerificationError, match="train_errors"):
        verify(copy)
    data["train_errors"] += 1
    data["grid"]["intrinsic_dim"] = [50]          # pretend fewer choices were searched
    (copy / "certificate.json").write_text(json.dumps(data))
    with pytest.raises(VerificationError, match="hyperparameter_bits"):
        verify(copy)
    # a data-independent bound cannot declare its normalisation free, with or without standardised inputs
    data["grid"] = json.loads((out / "certificate.json").read_text())["grid"]
    data["preprocessing"]["bits"], data["hyperparameter_bits"] = 0, data["grid_bits"]
    data["total_bits"] = data["message_bits"] + data["grid_bits"]
    (copy / "certificate.json").write_text(json.dumps(data))
    with pytest.raises(VerificationError, match="preprocessing.bits"):
        verify(copy)


def test_data_dependent_bound_verifies(tmp_path):
    settings = BoundConfig(dataset="digits", model="mlp", width=32, intrinsic_dim=50, epochs=4, quant_levels=5,
                           qat_epochs=1, lr=0.05, prior_split=600, prior_epochs=5, prior_lr=0.01,
                           grid={**DEFAULT_GRID, "prior_split": [None, 600]})
    cert = compression_bound(settings, tmp_path / "dd", quiet=True)
    assert cert["prior"]["kind"] == "trained" and cert["prior"]["split"] == 600
    assert cert["n"] == cert["data"]["n_train_total"] - 600
    assert (tmp_path / "dd" / "prior.safetensors").is_file()
    assert verify(tmp_path / "dd")["train_errors"] == cert["train_errors"]
    # inputs standardised on the prior split (the default of a data-dependent bound): normalisation free
    assert cert["data"]["normalise_first"] == 600 and cert["preprocessing"]["bits"] == 0
    assert cert["hyperparameter_bits"] == pytest.approx(cert["grid_bits"])
    assert "first 600 training points" in cert["preprocessing"]["normalisation"]
    # forged: the statistics said to come from more points than the prior's (the bound's points among them)
    copy = tmp_path / "forged"
    shutil.copytree(tmp_path / "dd", copy, ignore=shutil.ignore_patterns("prior", "subspace", "quantized"))
    data = json.loads((copy / "certificate.json").read_text())
    data["data"]["normalise_first"] = 700
    (copy / "certificate.json").write_text(json.dumps(data))
    with pytest.raises(VerificationError, match="preprocessing.bits"):
        verify(copy)
    (tmp_path / "dd" / "prior.safetensors").write_bytes(b"not a prior")
    with pytest.raises(VerificationError, match="prior centre"):
        verify(tmp_path / "dd")


def test_subspace_run_resumes_and_refuses_bad_settings(tmp_path):
    with pytest.raises(ConfigError):
        from genlab.config import validate_config
        validate_config(TrainConfig, {"quant_levels": 4})           # quantization needs a subspace
    cfg = TrainConfig(dataset="digits", model="mlp", width=16, intrinsic_dim=30, optimizer="adam", lr=0.05,
                      epochs=2, device="cpu")
    run = train(cfg, tmp_path / "a", quiet=True)
    assert run.objective.num_params() == 30
    with pytest.raises(ConfigError, match="no finished run"):
        train(cfg.with_changes(**{"quant_levels": 3, "init_from": str(tmp_path / "missing")}), tmp_path / "b",
              quiet=True)
    with pytest.raises(ConfigError, match="intrinsic_dim"):
        train(cfg.with_changes(**{"quant_levels": 3, "init_from": str(tmp_path / "a"), "intrinsic_dim": 31}),
              tmp_path / "c", quiet=True)
    # quantized runs start from the subspace run's w with a codebook fitted to it
    q = train(cfg.with_changes(**{"quant_levels": 3, "init_from": str(tmp_path / "a"), "epochs": 1}),
              tmp_path / "d", quiet=True)
    assert q.model.quantizer is not None and math.isfinite(q.summary["train_loss"])


def test_progressive_quantization_run_resumes_and_certifies(tmp_path):
    from genlab.bounds.compression.certificate import certify

    cfg = TrainConfig(dataset="digits", model="mlp", width=16, intrinsic_dim=50, optimizer="adam", lr=0.05,
                      epochs=2, device="cpu", projection_scale="fan-in")
    train(cfg, tmp_path / "sub", quiet=True)
    qcfg = cfg.with_changes(quant_levels=4, quant_stages=3, init_from=str(tmp_path / "sub"), epochs=3, lr=0.005)
    whole = train(qcfg, tmp_path / "whole", quiet=True)
    assert whole.model.quantizer.complete
    fractions = [r["quantized_fraction"] for r in map(json.loads, (tmp_path / "whole" / "metrics.jsonl")
                                                     .read_text().splitlines()) if "quantized_fraction" in r]
    assert fractions == pytest.approx([25 / 50, 38 / 50, 1.0])          # ceil(3/4 of 50) = 38
    # interrupted in the second stage (a SIGINT, as Ctrl-C), then resumed: the same mask and the same final w
    from genlab.train.callbacks import Callback
    from genlab.train.loop import TrainingInterrupted

    class CtrlC(Callback):
        def on_step_end(self, state):
            if state.step == state.total_steps // 2:
                self.mask = state.model.quantizer.mask.clone()
                os.kill(os.getpid(), signal.SIGINT)

    stop = CtrlC()
    with pytest.raises(TrainingInterrupted):
        train(qcfg, tmp_path / "part", quiet=True, callbacks=[stop])
    assert 0 < int(stop.mask.sum()) < 50
    resumed = train(qcfg, tmp_path / "part", quiet=True)
    assert torch.equal(resumed.model.w, whole.model.w) and torch.equal(resumed.model.quantizer.mask,
                                                                         whole.model.quantizer.mask)
    cert = certify(tmp_path / "part", tmp_path / "cert", grid={**DEFAULT_GRID, "quant_stages": [1, 3],
                                                               "projection_scale": ["none", "fan-in"]})
    assert cert["projection"]["scale"] == "fan-in"
    assert verify(tmp_path / "cert")["train_errors"] == cert["train_errors"]


def test_reproduction_writes_table_figure_and_verdict(tmp_path):
    from genlab.experiments import read_results
    from genlab.experiments.compression import CompressionSetting, _row, reproduce

    tiny = dict(dataset="digits", model="mlp", epochs=4, lr=0.05, quant_levels=5, qat_epochs=1, qat_lr=0.003)
    setting = CompressionSetting(rows=[_row("digits", intrinsic_dim=50, **tiny)], sweep_dataset="digits",
                                 sweep=[_row("digits-d25", intrinsic_dim=25, **tiny)])
    result = reproduce(tmp_path / "r", quiet=True, setting=setting)
    assert read_results(tmp_path / "r").verdict == result.verdict
    rows = result.details["rows"]
    assert set(rows) == {"digits", "digits-d25"} and all(r["verified"] for r in rows.values())
    assert result.metrics["all_verified"] is True
    # no MNIST rows: the published-figure comparison cannot be made, so at best inconclusive
    assert result.verdict == ("inconclusive" if result.metrics["all_non_vacuous"] else "did not hold")
    assert (tmp_path / "r" / "figures" / "bound-vs-d.png").stat().st_size > 10000


@pytest.mark.parametrize("args, needle", [
    (["--projection", "hadamard"], "projection"),
    (["--levels", "1"], "levels"),
    (["--intrinsic-dim", "37"], "grid intrinsic_dim: the value used (37)"),
    (["--bound", "tightest"], "reported bound 'tightest' unknown"),
    (["--grid", "intrinsic_dim"], "expected KEY=[v1,v2,...], a JSON list of the values searched over"),
])
def test_bound_cli_bad_input_is_one_line(tmp_path, capsys, args, needle):
    from genlab.cli import main

    code = main(["bound", "--dataset", "digits", "--model", "mlp", "--out", str(tmp_path / "b"), *args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("genlab: error: ") and needle in lines[0], err


def test_verify_cli_exit_codes(tiny_bound, tmp_path, capsys):
    from genlab.cli import main

    out, cert = tiny_bound
    assert main(["verify", str(out)]) == 0
    assert "verified" in capsys.readouterr().out
    copy = tmp_path / "c"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("subspace", "quantized"))
    (copy / "message.bin").write_bytes((copy / "message.bin").read_bytes()[:-4])
    code = main(["verify", str(copy)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("genlab: error: ") and "message.bin" in err
    assert main(["verify", str(tmp_path / "nothing")]) == 2   # not a certificate: bad input


def test_standardise_on_first_cancels_the_loaders_affine_normalisation():
    from genlab.data import load_dataset
    from genlab.data.transforms import standardise_on_first

    plain = load_dataset("digits", normalise_first=300)
    first = plain.x_train[:300].double()                          # (300, 1, 8, 8): one channel
    assert abs(float(first.mean())) < 1e-6 and abs(float(first.std(unbiased=False)) - 1) < 1e-5
    assert plain.info["standardised_on"] == 300 and len(plain.info["mean"]) == 1
    # any per-channel affine map applied before is cancelled: the result depends on the raw points alone
    raw = load_dataset("digits")
    x2, t2, _ = standardise_on_first(raw.x_train * 3.5 - 2.0, raw.x_test * 3.5 - 2.0, 300, "digits")
    assert torch.allclose(x2, plain.x_train, atol=1e-4) and torch.allclose(t2, plain.x_test, atol=1e-4)
    with pytest.raises(DataError, match="normalise_first"):
        load_dataset("digits", normalise_first=10 ** 6)


def _mirrored_digits():
    """Another dataset of digits' shape and classes (the digits mirrored left-right): a transfer source."""
    from genlab.data import load_dataset

    d = load_dataset("digits")
    return d.x_train.flip(3), d.labels_train, d.x_test.flip(3), d.labels_test


@pytest.fixture
def mirrored_digits():
    import genlab
    from genlab.data import DATASETS

    genlab.register_dataset("digits-mirrored", _mirrored_digits, input_shape=(1, 8, 8), output_dim=10)
    yield "digits-mirrored"
    dict.__delitem__(DATASETS, "digits-mirrored")   # leave the registry as other tests expect it


def test_transfer_prior_bounds_every_point_and_verifies(tmp_path, mirrored_digits):
    settings = BoundConfig(dataset="digits", model="mlp", width=32, intrinsic_dim=50, epochs=4, quant_levels=5,
                           qat_epochs=1, lr=0.05, prior_dataset="digits-mirrored", prior_epochs=5, prior_lr=0.01,
                           grid={**DEFAULT_GRID, "prior_dataset": [None, "digits-mirrored"]})
    cert = compression_bound(settings, tmp_path / "tr", quiet=True)
    assert cert["prior"]["kind"] == "transfer" and cert["prior"]["dataset"] == "digits-mirrored"
    assert cert["prior"]["split"] == 0 and cert["n"] == cert["data"]["n_train_total"]     # all points bounded
    assert cert["preprocessing"]["bits"] == PREPROCESSING_BITS                            # not free: no split
    prior_cfg = json.loads((tmp_path / "tr" / "prior" / "config.json").read_text())
    assert prior_cfg["data"]["name"] == "digits-mirrored" and prior_cfg["data"]["n_train"] is None
    figures = verify(tmp_path / "tr")
    assert figures["train_errors"] == cert["train_errors"] and "prior.dataset" in figures["recorded_only"]
    # the prior centre is the certified one (hash), and a transfer prior cannot claim the bounded dataset
    data = json.loads((tmp_path / "tr" / "certificate.json").read_text())
    data["prior"]["dataset"] = "digits"
    (tmp_path / "tr" / "certificate.json").write_text(json.dumps(data))
    from genlab.bounds.compression.record import CertificateError

    with pytest.raises(CertificateError, match="transfer prior"):
        verify(tmp_path / "tr")
    from genlab.settings.bound import bound_config

    with pytest.raises(ConfigError, match="prior_dataset: digits is the dataset being bounded"):
        bound_config(dict(dataset="digits", model="mlp", intrinsic_dim=50, prior_dataset="digits"))


def test_rate_aware_assignment_trades_distortion_for_entropy():
    from genlab.bounds.compression.quantize import rate_aware

    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4000, generator=gen, dtype=torch.float64)
    book = init_codebook(w, 5)
    near = nearest(w, book)
    assert torch.equal(rate_aware(w, book, 0.0), near)

    def entropy(a):
        p = torch.bincount(a, minlength=5).double() / len(a)
        return float(-(p[p > 0] * p[p > 0].log2()).sum())

    spacing2 = float((book.max() - book.min()) / 4) ** 2
    for rate in (0.5, 2.0):
        a = rate_aware(w, book, rate)
        # every coordinate's level minimises its cost under the code lengths of the nearest assignment
        counts = torch.bincount(near, minlength=5).double() + 0.5
        lengths = -torch.log2(counts / counts.sum())
        cost = (w[:, None] - book[None, :]) ** 2 + rate * spacing2 * lengths[None, :]
        assert torch.equal(cost.argmin(1), a)
        assert entropy(a) < entropy(near)
        assert float(((w - book[a]) ** 2).mean()) > float(((w - book[near]) ** 2).mean())


def test_rate_aware_quantization_certifies_with_fewer_bits(tmp_path):
    base = dict(dataset="digits", model="mlp", width=32, intrinsic_dim=150, epochs=8, quant_levels=7, qat_epochs=2,
                lr=0.05, batch_size=64, grid={**DEFAULT_GRID, "quant_rate": [0.0, 2.0]})
    from genlab.train import train as train_run

    sub = tmp_path / "sub"
    train_run(BoundConfig(**base).subspace_stage(), sub, quiet=True)
    plain = compression_bound(BoundConfig(**base), tmp_path / "plain", from_run=sub, quiet=True)
    rated = compression_bound(BoundConfig(**base, quant_rate=2.0), tmp_path / "rated", from_run=sub, quiet=True)
    assert rated["message_bits"] < plain["message_bits"]
    assert rated["choices"]["quant_rate"] == 2.0
    assert verify(tmp_path / "rated")["bound"] == rated["bound"]
