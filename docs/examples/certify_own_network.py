"""Certify your own network after the fact: a BatchNorm CNN trained in a plain PyTorch loop, then a compression
bound on a predictor fitted to it, verified from a fresh process with --import.

Run from this folder:  python certify_own_network.py [OUT_DIR]

The network's factory is registered in ``examples_module`` (``genlab.register_model``), so that a verifier on
another machine can rebuild its architecture (``--import examples_module``; the certificate records the module's
source SHA-256); its BatchNorm running statistics are coded in the certificate's message. The bound is for the
compressed predictor genlab fits to the network, and the certificate says how often the two agree.
"""

import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from examples_module import bn_cnn   # registers "bn-cnn": a verifier elsewhere passes --import examples_module
from genlab.bounds.compression import BoundConfig, compression_bound, verify
from genlab.data import load_dataset

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bounds/own-bn-cnn")
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = bn_cnn(data.input_shape, data.output_dim)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(15):                                   # your own loop, as you would train it
        order = torch.randperm(len(data.x_train))
        for i in range(0, len(order), 64):
            batch = order[i: i + 64]
            loss = nn.functional.cross_entropy(model(data.x_train[batch]), data.y_train[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
    print(f"own network: test accuracy {accuracy:.4f}")

    cert = compression_bound(BoundConfig(dataset="digits", model="bn-cnn", intrinsic_dim=500, epochs=30, lr=0.05,
                                         batch_size=64, quant_levels=5, qat_epochs=2),
                             out, original=model, quiet=True)
    o = cert["original"]
    print(f"bound: {cert['bound']:.4f} on the compressed predictor (test error {cert['test_error']:.4f}); "
          f"agreement with your network: {o['test_agreement']:.4f} test, {o['train_agreement']:.4f} train; "
          f"BatchNorm buffers coded: {len(cert['buffers']['names'])}")
    assert verify(out)["bound"] == cert["bound"]
    # a verifier elsewhere passes the module that registers the architecture; genlab never imports it by itself
    done = subprocess.run([sys.executable, "-m", "genlab", "verify", str(out), "--import", "examples_module"],
                          capture_output=True, text=True)
    print(done.stdout.strip() or done.stderr.strip())
    sys.exit(done.returncode)
