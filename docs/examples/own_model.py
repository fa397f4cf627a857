"""Your own network, loss and DataLoader through genlab: fit with IVON, label noise and sharpness tracking,
then the top Hessian eigenvalues, trace and spectral density, then the CLI on the run directory.

Run from this folder:  python own_model.py [OUT_DIR]
"""

import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from examples_module import make_data, make_fixed_data, make_model
from genlab.curvature import HessianOperator, SharpnessTracker, hutchpp, lanczos, slq
from genlab.objective import Objective
from genlab.optim import IVON
from genlab.train import NoiseInjection, fit

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/own-model")
loss = nn.CrossEntropyLoss(label_smoothing=0.1)
model = make_model()
train_loader, test_loader = make_data()
objective = Objective(model, loss, train_loader)             # streams the loader; mini-batches for training
curvature_data = Objective(model, loss, make_fixed_data()[0])  # a fixed pass for full-dataset curvature

result = fit(objective, IVON(model.parameters(), lr=0.1, ess=len(train_loader.dataset), seed=0), out,
             epochs=20, test=Objective(model, loss, test_loader), seed=0, quiet=True,
             plugins=[NoiseInjection("label", 0.1), SharpnessTracker(curvature_data, every=20)],
             factories={"model": make_model, "data": make_fixed_data})
print(f"trained: test accuracy {result.summary['test_accuracy']:.3f}, sharpness {result.summary['sharpness']:.4g}")

H = HessianOperator(curvature_data)
top = lanczos(H, k=3, tol=1e-6, generator=torch.Generator().manual_seed(0))
trace = hutchpp(H, 60, generator=torch.Generator().manual_seed(0))
density = slq(H, 4, 30, generator=torch.Generator().manual_seed(0))
print("top-3 Hessian eigenvalues:", ", ".join(f"{v:.5g}" for v in top.eigenvalues))
print(f"trace {trace.value:.5g} +- {trace.std_error:.2g}; density support [{density.grid()[0]:.3g}, "
      f"{density.grid()[-1]:.3g}]")

# the same run directory from the command line (the run recorded examples_module:make_model / make_data)
genlab = [sys.executable, "-m", "genlab"]
subprocess.run([*genlab, "curvature", str(out), "--top-k", "3", "--trace", "--density", "--import", "examples_module"],
               check=True)
subprocess.run([*genlab, "report", str(out), "--import", "examples_module"], check=True)
