"""BatchNorm in a certificate: the running statistics are trained with the subspace run, coded in the message
(charged), decoded by the verifier and never recomputed from data; tampering with them is caught."""

import json
import shutil

import pytest
import torch
from torch import nn

from genlab.bounds.compression.buffers import decode_buffers, decoded_buffer, encode_buffers, quantize_buffer
from genlab.bounds.compression.certificate import VerificationError, rebuild_predictor
from genlab.bounds.compression.coding import MessageError, decode_chunk, encode_message
from genlab.bounds.compression.pipeline import BoundConfig, compression_bound
from genlab.bounds.compression.subspace import ProjectionSpec, SubspaceModel
from genlab.bounds.compression.verify import verify


def test_buffers_round_trip_after_the_coordinates():
    g = torch.Generator().manual_seed(0)
    buffers = {"a.running_mean": torch.randn(40, generator=g), "a.running_var": torch.rand(40, generator=g) + 0.1,
               "a.num_batches_tracked": torch.tensor(123456), "b.small": torch.tensor([0.25, -3.0, 7.5]),
               "c.ints": torch.tensor([-5, 0, 2 ** 40])}
    head = encode_message(torch.tensor([0, 1, 1, 0]), torch.tensor([-1.0, 1.0]))
    message = head + encode_buffers(buffers, 8, "adaptive")
    _, _, end = decode_chunk(message, 0, 4, 2)
    decoded, end = decode_buffers(message, end, buffers, 8, "adaptive")
    assert end == len(message)
    assert torch.equal(decoded["a.num_batches_tracked"], buffers["a.num_batches_tracked"])
    assert torch.equal(decoded["c.ints"], buffers["c.ints"])
    # the lowest and highest entries are exact (to float16), the others within half a level
    small = decoded["b.small"]
    assert small[1] == -3.0 and small[2] == 7.5 and abs(float(small[0]) - 0.25) <= 10.5 / 7 / 2
    log, lo, hi, symbols = quantize_buffer(buffers["a.running_var"], 8)
    assert log and torch.equal(decoded["a.running_var"], decoded_buffer(log, lo, hi, symbols, 8))
    ratio = decoded["a.running_var"] / buffers["a.running_var"]
    step = (hi - lo) / 7
    assert float(ratio.log().abs().max()) <= step / 2 + 1e-3          # relative precision: a log-domain grid
    assert not quantize_buffer(buffers["a.running_mean"], 8)[0]         # signed values: their own domain
    with pytest.raises(MessageError):
        decode_buffers(message[:-1], decode_chunk(message, 0, 4, 2)[2], buffers, 8, "adaptive")


def test_non_finite_statistics_are_refused_in_one_line():
    from genlab.errors import ConfigError

    with pytest.raises(ConfigError, match="bn.running_var holds non-finite values"):
        encode_buffers({"bn.running_var": torch.tensor([1.0, float("nan")])}, 8, "adaptive")


def test_subspace_model_trains_the_base_buffers_as_its_own():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model = SubspaceModel(base, ProjectionSpec("dense", 2, seed=0))
    assert model.buffer_names == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert {"base_buffers.b0", "base_buffers.b1", "base_buffers.b2"} <= set(model.state_dict())
    x = torch.randn(16, 3)
    model.train()(x)
    own = model.buffers_of_base()
    assert int(own["1.num_batches_tracked"]) == 1 and not torch.equal(own["1.running_mean"], torch.zeros(4))
    assert torch.equal(base[1].running_mean, torch.zeros(4))            # the base's own buffers are untouched
    # eval mode normalises with the wrapper's statistics: the base given the same buffers agrees
    base[1].running_mean.copy_(own["1.running_mean"])
    base[1].running_var.copy_(own["1.running_var"])
    assert torch.allclose(model.eval()(x), base.eval()(x), atol=1e-6)


def test_genlab_bound_keeps_batchnorm_by_default():
    assert BoundConfig(model="resnet").train.model.batchnorm is True
    assert BoundConfig(model="resnet", batchnorm=False).train.model.batchnorm is False


@pytest.fixture(scope="module")
def resnet_bound(tmp_path_factory):
    out = tmp_path_factory.mktemp("bn") / "resnet"
    settings = BoundConfig(dataset="digits", model="resnet", depth=8, width=8, intrinsic_dim=250, epochs=6,
                           quant_levels=5, qat_epochs=2, lr=0.05, batch_size=64, buffer_levels=16)
    return out, compression_bound(settings, out, quiet=True)


def test_resnet_with_batchnorm_is_certified_with_its_statistics_coded(resnet_bound):
    out, cert = resnet_bound
    assert cert["model"]["batchnorm"] is True
    names = cert["buffers"]["names"]
    assert cert["buffers"]["levels"] == 16 and len(names) == 27 and "stem.1.running_var" in names
    # 1,437 digits cannot pay for ~2,600 bits of statistics: valid, and labelled vacuous when it is
    assert cert["train_error"] <= cert["bound"]
    assert cert["vacuous"] == (cert["bound"] >= cert["constant_predictor_error"])
    message = (out / "message.bin").read_bytes()
    _, _, end = decode_chunk(message, 0, 250, cert["quantization"]["levels"])
    assert end < len(message)                         # the statistics take bytes of their own, and are charged
    assert cert["message_bits"] == 8 * len(message)
    model = rebuild_predictor(cert, message)
    var = model.buffers_of_base()["stem.1.running_var"]
    assert not torch.equal(var, torch.ones_like(var))  # trained statistics, decoded from the message
    assert verify(out)["train_errors"] == cert["train_errors"]


def test_tampered_statistics_or_names_do_not_verify(resnet_bound, tmp_path):
    out, cert = resnet_bound
    copy = tmp_path / "flipped"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("subspace", "quantized"))
    message = bytearray((copy / "message.bin").read_bytes())
    message[-3] ^= 0x41                              # inside the last buffers' part
    (copy / "message.bin").write_bytes(bytes(message))
    with pytest.raises((VerificationError, MessageError)):
        verify(copy)
    copy = tmp_path / "renamed"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("subspace", "quantized"))
    data = json.loads((copy / "certificate.json").read_text())
    data["buffers"] = None                           # claim a network without statistics
    (copy / "certificate.json").write_text(json.dumps(data))
    with pytest.raises(VerificationError, match="buffers"):
        verify(copy)


def test_frozen_buffers_normalise_with_the_fixed_statistics_in_training():
    torch.manual_seed(0)
    model = SubspaceModel(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), ProjectionSpec("dense", 2, seed=0))
    model.frozen_buffers = True
    before = {k: v.clone() for k, v in model.buffers_of_base().items()}
    x = torch.randn(16, 3)
    train_out = model.train()(x)
    assert all(torch.equal(before[k], v) for k, v in model.buffers_of_base().items())   # never updated
    assert torch.allclose(train_out, model.eval()(x))                                   # running statistics used
    model.train()(x)                                                                     # and again after eval()
    assert all(torch.equal(before[k], v) for k, v in model.buffers_of_base().items())


def test_prior_buffers_need_a_data_dependent_bound():
    from genlab.errors import ConfigError
    from genlab.settings.bound import bound_config

    with pytest.raises(ConfigError, match="subspace_buffers: prior keeps a trained prior centre's statistics"):
        bound_config({"model": "resnet", "subspace_buffers": "prior"})


def test_data_dependent_bound_keeps_the_prior_centres_statistics(tmp_path):
    from genlab.bounds.compression.certificate import DEFAULT_GRID
    from genlab.bounds.compression.record import CertificateError
    from genlab.train.checkpoint import load_state_dict

    out = tmp_path / "dd"
    cert = compression_bound(BoundConfig(dataset="digits", model="resnet", depth=8, width=8, intrinsic_dim=50,
                                         epochs=2, quant_levels=3, qat_epochs=1, lr=0.02, prior_split=700,
                                         prior_epochs=4, prior_lr=0.01, subspace_buffers="prior",
                                         grid={**DEFAULT_GRID, "prior_split": [None, 700]}), out, quiet=True)
    assert cert["buffers"]["source"] == "prior" and len(cert["buffers"]["names"]) == 27
    message = (out / "message.bin").read_bytes()
    assert decode_chunk(message, 0, 50, cert["quantization"]["levels"])[2] == len(message)   # nothing coded
    prior = load_state_dict(out / "prior" / "model.safetensors")
    rebuilt = rebuild_predictor(cert, message, load_state_dict(out / "prior.safetensors"))
    assert all(torch.equal(v, prior[k]) for k, v in rebuilt.buffers_of_base().items())
    assert verify(out)["train_errors"] == cert["train_errors"]
    data = json.loads((out / "certificate.json").read_text())
    data["buffers"]["source"] = "message"            # claim coded statistics: the message holds none
    (out / "certificate.json").write_text(json.dumps(data))
    with pytest.raises((VerificationError, MessageError)):
        verify(out)
    data["buffers"]["source"], data["prior"] = "prior", {"kind": "init", "split": 0, "file": None, "sha256": None}
    (out / "certificate.json").write_text(json.dumps(data))
    with pytest.raises(CertificateError, match="source prior needs a trained prior centre"):
        verify(out)
