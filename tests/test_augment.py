"""Data augmentation (genlab.train.augment): the draws against a loop written out by hand, what the step sees,
what it does not touch, and bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genlab.config import TrainConfig
from genlab.errors import ConfigError
from genlab.train import Callback, train
from genlab.train.augment import shift_and_flip

BASE = dict(dataset="digits", n_train=300, model="cnn", optimizer="sgd", lr=0.05, batch_size=50, steps=12,
            eval_every=6, seed=3)


def test_shift_matches_a_hand_written_crop_of_the_edge_padded_image():
    x = torch.randn(6, 2, 7, 5)
    gen = torch.Generator().manual_seed(11)
    out = shift_and_flip(x, 2, False, gen)
    # the same draws, replayed: offsets in {0..4} per example for rows, then for columns
    gen = torch.Generator().manual_seed(11)
    dy, dx = torch.randint(0, 5, (6,), generator=gen), torch.randint(0, 5, (6,), generator=gen)
    for b in range(6):
        padded = np.pad(x[b].numpy(), ((0, 0), (2, 2), (2, 2)), mode="edge")
        expected = padded[:, dy[b]: dy[b] + 7, dx[b]: dx[b] + 5]
        assert np.array_equal(out[b].numpy(), expected)
    assert out.shape == x.shape and not torch.equal(out, x)


def test_flip_mirrors_about_half_the_images_and_nothing_else():
    x = torch.randn(400, 1, 4, 6)
    out = shift_and_flip(x, 0, True, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 150 < int(mirrored.sum()) < 250                         # Binomial(400, 1/2): 200 +- 10


class Inputs(Callback):
    """Records the inputs of the first chunk each step's gradient is computed on."""

    def __init__(self):
        self.seen = []

    def wrap_gradient(self, state, compute):
        def spy(target_transform=None, input_transform=None):
            def keep(x):
                x = x if input_transform is None else input_transform(x)
                self.seen.append(x.detach().clone())
                return x
            return compute(target_transform=target_transform, input_transform=keep)
        return spy


def test_the_step_sees_shifted_inputs_the_evaluation_the_data(tmp_path):
    spy = Inputs()
    run = train(TrainConfig(**BASE, augment_shift=1), tmp_path / "a", callbacks=[spy], quiet=True)
    plain = train(TrainConfig(**BASE), tmp_path / "b", quiet=True)
    data = run.objective.data.inputs
    assert len(spy.seen) == 12
    # every augmented batch is a set of images of the training set, each moved by at most one pixel: not equal
    # to any unshifted training image in most rows, but equal to it in the pixels a one-pixel shift preserves
    moved = sum(not bool((s[None] == data[:, None]).flatten(2).all(2).any()) for s in spy.seen[0])
    assert moved > 25
    # evaluation and the certificate see the data as they are: the same train set, a different trajectory
    assert torch.equal(run.objective.data.inputs, plain.objective.data.inputs)
    assert run.summary["train_loss"] != plain.summary["train_loss"]
    again = train(TrainConfig(**BASE, augment_shift=1), tmp_path / "c", quiet=True)
    assert again.summary["train_loss"] == run.summary["train_loss"]     # draws keyed on (seed, step)


@pytest.mark.parametrize("settings, message", [
    (dict(dataset="mnist1d", model="mlp", augment_shift=1), "transform images"),
    (dict(augment_shift=8), "not below the images' size"),
])
def test_bad_augmentation_is_one_line(tmp_path, settings, message):
    with pytest.raises(ConfigError, match=message):
        train(TrainConfig(**{**BASE, **settings}), tmp_path / "bad", quiet=True)


def test_augmentation_wraps_label_noise_from_either_side(tmp_path):
    from genlab.train import Augmentation

    noisy = {**BASE, "noise": "label", "noise_sigma": 0.3}
    inner = train(TrainConfig(**noisy, augment_shift=1), tmp_path / "inner", quiet=True)   # registered: innermost
    outer = train(TrainConfig(**noisy), tmp_path / "outer", callbacks=[Augmentation(1)], quiet=True)
    # the same draws either way: augmentation keys on (seed, step, chunk), label noise on (seed, step)
    assert outer.summary["train_loss"] == inner.summary["train_loss"]
