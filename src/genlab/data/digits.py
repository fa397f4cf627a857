"""scikit-learn's bundled 8x8 handwritten digits (1,797 images; no file, no download).

Split: the first 1,437 images train, the last 360 test. The images are ordered by
writer, so the test digits come from writers the training set never saw: a harder,
more honest split than a random one.
"""

from __future__ import annotations

import torch

N_TRAIN = 1437


def load_digits_split(data_dir=None) -> tuple:
    """``(x_train, y_train, x_test, y_test, info)``: float32 ``(N, 1, 8, 8)`` images, int64 labels 0..9.

    ``data_dir`` is ignored. Normalisation: ``x / 16`` (pixels are 0..16), then ``(x - mean) / std`` with
    the training set's scalar mean and std (recorded in ``info``).
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    xtr, xte = x[:N_TRAIN], x[N_TRAIN:]
    mean, std = float(xtr.mean()), float(xtr.std())
    info = {"normalisation": "x/16, then (x - mean) / std with the training set's scalar mean and std",
            "mean": mean, "std": std, "split": f"first {N_TRAIN} / last {len(y) - N_TRAIN} (writer-ordered)",
            "source": "sklearn.datasets.load_digits"}
    return (xtr - mean) / std, y[:N_TRAIN].clone(), (xte - mean) / std, y[N_TRAIN:].clone(), info
