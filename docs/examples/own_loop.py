"""genlab's pieces in your own PyTorch loop: IVON with its posterior predictive, label noise, sharpness.

Run from this folder:  python own_loop.py
"""

import torch
from torch import nn

from examples_module import make_data, make_fixed_data, make_model
from genlab.curvature import HessianOperator, SharpnessTracker, lanczos
from genlab.objective import Objective
from genlab.optim import IVON, posterior_predictive
from genlab.train import NoiseInjection

torch.manual_seed(0)
model = make_model()
loss = nn.CrossEntropyLoss(label_smoothing=0.1)
train_loader, test_loader = make_data()
fixed = Objective(model, loss, make_fixed_data()[0])   # the full training set in a fixed order
# no weight decay on norms and biases: IVON takes parameter groups
decay = [p for n, p in model.named_parameters() if n.endswith("weight") and "norm" not in n]
rest = [p for n, p in model.named_parameters() if not (n.endswith("weight") and "norm" not in n)]
optimizer = IVON([{"params": decay, "weight_decay": 1e-4}, {"params": rest, "weight_decay": 0.0}],
                 lr=0.1, ess=len(train_loader.dataset), seed=0)
noise = NoiseInjection("label", 0.1, seed=0)
tracker = SharpnessTracker(fixed, every=20)

step = 0
for epoch in range(20):
    for x, y in train_loader:
        batch_objective = Objective(model, loss, (x, y))

        def closure():  # IVON evaluates the loss at a posterior sample; label noise flips some targets
            optimizer.zero_grad()
            return noise.gradient(batch_objective, step)

        optimizer.step(closure)
        step += 1
        tracker.after_step(optimizer)

x_te, y_te = next(iter(test_loader))
probs = posterior_predictive(optimizer, model, x_te, samples=16)
print(f"{step} steps; posterior-predictive test accuracy {(probs.argmax(1) == y_te).float().mean():.3f}")
print("sharpness every 20 steps:", ", ".join(f"{r['sharpness']:.3g}" for r in tracker.history[-4:]))
top = lanczos(HessianOperator(fixed), k=3, tol=1e-6, generator=torch.Generator().manual_seed(0))
print("top-3 Hessian eigenvalues at the mean:", ", ".join(f"{v:.5g}" for v in top.eigenvalues))
