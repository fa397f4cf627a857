"""A user-defined network and dataset through --import: certified by genlab bound, verified from a fresh
process elsewhere, and refused (one line) when the verifier's code is not the certified code."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MODULE = '''
import torch
from torch import nn
import genlab
from sklearn.datasets import load_digits


def digits_flat():
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16
    y = torch.tensor(d.target)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def layernorm_net(input_shape, output_dim, width=32, **kw):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], width), nn.LayerNorm(width), nn.ReLU(),
                         nn.Linear(width, output_dim))


genlab.register_dataset("mine", digits_flat, input_shape=(64,), output_dim=10)
genlab.register_model("my-ln-net", layernorm_net)
'''


def genlab_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "genlab", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def certified(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    (root / "user").mkdir()
    (root / "user" / "mynet.py").write_text(MODULE)
    r = genlab_cli("bound", "--import", "mynet.py", "--dataset", "mine", "--model", "my-ln-net",
                   "--intrinsic-dim", "50", "--epochs", "3", "--qat-epochs", "1", "--out", str(root / "cert"),
                   cwd=root / "user")
    assert r.returncode == 0, r.stderr
    return root


def test_certificate_records_the_code(certified):
    cert = json.loads((certified / "cert" / "certificate.json").read_text())
    import hashlib

    source = hashlib.sha256((certified / "user" / "mynet.py").read_bytes()).hexdigest()
    assert cert["code"] == {"imports": [{"module": "mynet", "sha256": source}],
                            "model_factory": "mynet:layernorm_net", "dataset_factory": "mynet:digits_flat"}
    assert cert["model"]["name"] == "my-ln-net" and cert["data"]["name"] == "mine"


def test_verified_from_a_fresh_process_elsewhere(certified, tmp_path):
    r = genlab_cli("verify", str(certified / "cert"), "--import", str(certified / "user" / "mynet.py"),
                   cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout


def test_verify_without_the_import_says_which(certified, tmp_path):
    r = genlab_cli("verify", str(certified / "cert"), cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "--import mynet" in lines[0], r.stderr


def test_verify_with_other_code_names_what_differs(certified, tmp_path):
    other = tmp_path / "mynet.py"
    other.write_text(MODULE + "\n# edited\n")
    r = genlab_cli("verify", str(certified / "cert"), "--import", str(other), cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "module mynet: its source here" in lines[0], r.stderr
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    (swapped / "mynet.py").write_text(MODULE.replace('register_model("my-ln-net", layernorm_net)',
                                                     'register_model("my-ln-net", lambda s, o, **k: layernorm_net(s, o))'))
    cert = json.loads((certified / "cert" / "certificate.json").read_text())
    cert["code"]["imports"][0]["sha256"] = __import__("hashlib").sha256((swapped / "mynet.py").read_bytes()).hexdigest()
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "certificate.json").write_text(json.dumps(cert))
    (forged / "message.bin").write_bytes((certified / "cert" / "message.bin").read_bytes())
    r = genlab_cli("verify", str(forged), "--import", str(swapped / "mynet.py"), cwd=tmp_path)
    assert r.returncode == 1 and "model 'my-ln-net' is built here by mynet:<lambda>" in r.stderr, r.stderr
