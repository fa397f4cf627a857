"""The same network, loss and data in a PyTorch Lightning Trainer: IVON, label noise, sharpness tracking.

Run from this folder:  python own_lightning.py   (needs pip install 'genlab[lightning]')
"""

import pytorch_lightning as pl
import torch
from torch import nn

from examples_module import make_data, make_fixed_data, make_model
from genlab.curvature import HessianOperator, lanczos
from genlab.integrations.lightning import SharpnessCallback
from genlab.objective import Objective
from genlab.optim import IVON
from genlab.train import NoiseInjection


class WineModule(pl.LightningModule):
    def __init__(self, n_train: int):
        super().__init__()
        self.net = make_model()
        self.loss = nn.CrossEntropyLoss(label_smoothing=0.1)
        self.noise = NoiseInjection("label", 0.1, seed=0)
        self.n_train = n_train

    def training_step(self, batch, batch_idx):
        x, y = batch
        y = self.noise.noisy_targets(y, self.global_step, num_classes=3)
        return self.loss(self.net(x), y)

    def configure_optimizers(self):
        return IVON(self.net.parameters(), lr=0.1, ess=self.n_train, seed=0)


pl.seed_everything(0, verbose=False)
train_loader, _ = make_data()
module = WineModule(len(train_loader.dataset))
fixed = Objective(module.net, module.loss, make_fixed_data()[0])
sharpness = SharpnessCallback(fixed, every=20)
trainer = pl.Trainer(max_epochs=20, callbacks=[sharpness], logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
trainer.fit(module, train_loader)
print(f"{trainer.global_step} steps; sharpness every 20 steps:",
      ", ".join(f"{r['sharpness']:.3g}" for r in sharpness.history))
top = lanczos(HessianOperator(fixed), k=3, tol=1e-6, generator=torch.Generator().manual_seed(0))
print("top-3 Hessian eigenvalues:", ", ".join(f"{v:.5g}" for v in top.eigenvalues))
