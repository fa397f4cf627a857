"""A model, data and loss genlab does not ship, as a researcher would write them (used by the examples).

``genlab curvature RUN --import examples_module`` finds these functions by the names the run directory
recorded (``examples_module:make_model`` ...), so keep them at module level.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import genlab


class ResidualLNMLP(nn.Module):
    """A residual MLP with LayerNorm (pre-norm blocks), the kind of net genlab's registry does not have."""

    def __init__(self, d_in: int = 13, width: int = 32, blocks: int = 2, classes: int = 3):
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
                                    for _ in range(blocks))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(self.norm(h))


def make_model(width: int = 32, blocks: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return ResidualLNMLP(width=width, blocks=blocks)


def wine_tensors():
    """scikit-learn's wine data (178 examples, 13 features, 3 classes), standardised on the train split."""
    x, y = load_wine(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    mean, std = x_tr.mean(0), x_tr.std(0)
    as_x = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    return as_x(x_tr), torch.tensor(y_tr), as_x(x_te), torch.tensor(y_te)


def make_data(batch_size: int = 32):
    """(train loader, test loader): DataLoaders, as the user's own code has them (shuffled for training)."""
    x_tr, y_tr, x_te, y_te = wine_tensors()
    train = DataLoader(TensorDataset(x_tr, y_tr), batch_size=batch_size, shuffle=True)
    test = DataLoader(TensorDataset(x_te, y_te), batch_size=256)
    return train, test


def make_fixed_data(batch_size: int = 64):
    """The same data in a fixed order: what full-dataset curvature streams over (two passes must agree)."""
    x_tr, y_tr, x_te, y_te = wine_tensors()
    return (DataLoader(TensorDataset(x_tr, y_tr), batch_size=batch_size),
            DataLoader(TensorDataset(x_te, y_te), batch_size=256))


# The same model and data by name, for the config-driven commands:
#   genlab train --import examples_module --dataset wine --model resmlp-ln --optimizer ivon --epochs 5 --out runs/w
def _registered_model(input_shape, output_dim, width: int = 32, blocks: int = 2):
    return ResidualLNMLP(d_in=input_shape[0], width=width, blocks=blocks, classes=output_dim)


def _registered_data():
    return wine_tensors()


import genlab  # noqa: E402

genlab.register_model("resmlp-ln", _registered_model, description="residual MLP with LayerNorm (examples_module)")
genlab.register_dataset("wine", _registered_data, task="classification", input_shape=(13,), output_dim=3,
                        n_train=124, n_test=54, description="scikit-learn's wine data (examples_module)")


def bn_cnn(input_shape, output_dim, width=16):
    """A small CNN with BatchNorm for 8x8 images (certify_own_network.py certifies it after the fact)."""
    return nn.Sequential(nn.Conv2d(input_shape[0], width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, output_dim))


genlab.register_model("bn-cnn", bn_cnn)
