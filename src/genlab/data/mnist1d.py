"""MNIST-1D (Greydanus 2020), generated procedurally: no file, no download.

Our own implementation of the reference procedure (github greydanus/mnist1d,
``make_dataset`` with its default arguments): ten 12-point templates, each
example padded, dilated, scaled, translated, given correlated background noise
and i.i.d. noise, sheared and resampled to 40 points; then a batch shuffle,
global standardisation and a 4,000 / 1,000 split. The random calls are made in
the reference's order on a ``numpy.random.RandomState(seed)``, so seed 42 gives
the official dataset, without touching numpy's global random state.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from genlab.data.checks import check_int, option

TEMPLATES = np.array([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
])

DEFAULTS = dict(num_samples=5000, train_split=0.8, template_len=12, padding=(36, 60), scale_coeff=0.4,
                max_translation=48, corr_noise_scale=0.25, iid_noise_scale=2e-2, shear_scale=0.75,
                final_seq_length=40, seed=42)


def templates() -> np.ndarray:
    """The ten templates, whitened: zero mean, unit std, starting at 0, divided by 6."""
    x = TEMPLATES - TEMPLATES.mean(1, keepdims=True)
    x = x / x.std(1, keepdims=True)
    x = x - x[:, :1]
    return x / 6.0


def _resample(x: np.ndarray, n: int) -> np.ndarray:
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(x)), x)


def _transform(x: np.ndarray, rng: np.random.RandomState, a: dict) -> np.ndarray:
    low, high = a["padding"]
    p = low + int(rng.rand() * (high - low + 1))
    x = np.concatenate([x + 1e-8, np.zeros(p)])                          # pad
    x = _resample(x, a["template_len"] + high)                           # dilate
    x = x * (1 + a["scale_coeff"] * (rng.rand() - 0.5))                  # scale
    k = rng.choice(a["max_translation"])
    x = np.concatenate([x[-k:], x[:-k]])                                 # translate (k = 0: unchanged)
    mask = x != 0
    corr = gaussian_filter(a["corr_noise_scale"] * rng.randn(*x.shape), 2)
    x = mask * x + (1 - mask) * corr                                     # correlated background noise
    x = x + a["iid_noise_scale"] * rng.randn(*x.shape)                   # i.i.d. noise
    x = x - a["shear_scale"] * (rng.rand() - 0.5) * np.linspace(-0.5, 0.5, len(x))  # shear
    return _resample(x, a["final_seq_length"])                           # subsample


@functools.lru_cache(maxsize=4)
def _make(seed: int, num_samples: int) -> tuple[np.ndarray, np.ndarray, float, float, int]:
    """The shuffled, standardised signals and labels, the raw mean/std used, and the split index (cached)."""
    a = {**DEFAULTS, "seed": seed, "num_samples": num_samples}
    rng = np.random.RandomState(seed)
    tpl = templates()
    per_class = num_samples // len(tpl)
    xs, ys = [], []
    for label in range(len(tpl)):
        for _ in range(per_class):
            xs.append(_transform(tpl[label], rng, a))
            ys.append(label)
    order = rng.permutation(len(ys))
    xs, ys = np.stack(xs)[order], np.array(ys, dtype=np.int64)[order]
    mean, std = float(xs.mean()), float(xs.std())
    xs = (xs - xs.mean()) / xs.std()
    for arr in (xs, ys):
        arr.flags.writeable = False  # the cache is shared: nobody may change it in place
    return xs, ys, mean, std, int(len(ys) * a["train_split"])


def generate(seed: int = 42, num_samples: int = 5000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: fresh numpy copies (float64 signals ``(N, 40)``, int64 labels).

    Seed 42 with 5,000 samples is the official MNIST-1D (4,000 / 1,000). ``num_samples // 10`` examples are
    made per class. The signals are globally standardised (mean 0, std 1 over train and test together).
    The arrays are generated once per ``(seed, num_samples)`` and cached in memory.
    """
    xs, ys, _, _, split = _make(int(seed), int(num_samples))
    return xs[:split].copy(), ys[:split].copy(), xs[split:].copy(), ys[split:].copy()


def load_mnist1d(data_dir=None, seed: int = 42, num_samples: int = 5000) -> tuple:
    """``(x_train, y_train, x_test, y_test, info)`` as float32 / int64 tensors for :func:`genlab.data.load_dataset`.

    ``data_dir`` is ignored (nothing is read). Normalisation: the reference's global standardisation;
    ``info`` records the raw mean and std it divided by.

    Raises:
        DataError: ``seed`` outside 0..2**32-1 or ``num_samples`` below 10.
    """
    seed = check_int(seed, option("mnist1d", "seed"), 0, 2**32 - 1)
    num_samples = check_int(num_samples, option("mnist1d", "num_samples") + " (one example per class at least)", 10)
    xs, ys, mean, std, split = _make(seed, num_samples)
    f32 = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731  (torch.tensor copies: the cache stays intact)
    i64 = lambda a: torch.tensor(a, dtype=torch.int64)  # noqa: E731
    info = {"normalisation": "global standardisation of the generated signals, as the reference does",
            "mean": mean, "std": std, "generator": "greydanus/mnist1d make_dataset procedure",
            "num_samples_generated": len(ys)}
    return f32(xs[:split]), i64(ys[:split]), f32(xs[split:]), i64(ys[split:]), info
