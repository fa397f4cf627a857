"""Data augmentation in training (``--augment-shift K``, ``--augment-flip``): random translations and flips of
image inputs, drawn afresh for every example of every step.

Why genlab has it: a better-generalising network is a tighter bound. A compression bound counts errors on the
``n`` original training points only and holds for any predictor its message codes, however the predictor was
chosen, so training on shifted copies is free in the certificate (the setting is charged like every other
choice when it is in the declared grid). A data-dependent bound's prior centre, trained on the prior split, gains
most: its error on the other points is most of the bound.

What one draw is: each example is padded by ``K`` pixels on every side with its own edge values (replicate: the
background of centred digits), then cropped back to its size at an offset drawn uniformly from
``{-K, ..., K}^2``; with ``flip``, mirrored left-right with probability 1/2. The draws are a pure function of
``(seed, step, chunk)``, so a resumed run repeats them exactly and there is no state to checkpoint. Only the
training step's gradient sees augmented inputs: evaluation, curvature and the certificate use the data as they
are.
"""

from __future__ import annotations

import torch

from genlab.errors import ConfigError
from genlab.seeding import keyed_generator
from genlab.train.callbacks import Callback, TrainState
from genlab.train.plugins import BuildContext, register_plugin_factory


def shift_and_flip(x: torch.Tensor, shift: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """A random translation by up to ``shift`` pixels (edge-replicated) and, with ``flip``, a random left-right
    mirror, of every image of ``x`` (``(B, C, H, W)``); a new tensor, ``x`` untouched."""
    b, _, h, w = x.shape
    out = x
    if shift > 0:
        padded = torch.nn.functional.pad(x, (shift, shift, shift, shift), mode="replicate")
        dy = torch.randint(0, 2 * shift + 1, (b,), generator=gen).to(x.device)
        dx = torch.randint(0, 2 * shift + 1, (b,), generator=gen).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, :, None]     # (B, H, 1)
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])[:, None, :]     # (B, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)        # (B, C, H, W)
    if flip:
        mirrored = torch.rand(b, generator=gen).to(x.device) < 0.5
        out = torch.where(mirrored[:, None, None, None], out.flip(3), out)
    return out.contiguous()


class Augmentation(Callback):
    """Training plugin: each step's inputs shifted (and flipped) at random (module docstring).

    Args:
        shift: the largest translation, in pixels, along each axis (0: none).
        flip: mirror left-right with probability 1/2.
        seed: the run's seed keys the draws (default: the run's).
    """

    state_key = "augmentation"

    def __init__(self, shift: int = 0, flip: bool = False, seed: int | None = None):
        if not (isinstance(shift, int) and shift >= 0):
            raise ConfigError(f"augment_shift: must be an integer >= 0 (got {shift!r})")
        self.shift, self.flip, self.seed = shift, bool(flip), seed

    def settings(self) -> dict:
        return {"shift": self.shift, "flip": self.flip}

    def wrap_gradient(self, state: TrainState, compute):
        seed = state.seed if self.seed is None else self.seed
        step = state.step

        def augmented(target_transform=None, input_transform=None):
            chunk = [0]   # the Objective passes the step's chunks in order: one generator per chunk

            def transform(x):
                if not isinstance(x, torch.Tensor) or x.dim() != 4:
                    raise ConfigError(f"augment_shift / augment_flip transform images (batch, channels, height, "
                                      f"width); these inputs are {getattr(x, 'shape', type(x).__name__)}")
                gen = keyed_generator(seed, step, chunk[0], 29)
                chunk[0] += 1
                x = shift_and_flip(x, self.shift, self.flip, gen)
                return x if input_transform is None else input_transform(x)

            return compute(target_transform=target_transform, input_transform=transform)

        return augmented


def _augment_plugins(ctx: BuildContext) -> list[Callback]:
    s = ctx.config.plugins.augment
    if s.augment_shift == 0 and not s.augment_flip:
        return []
    shape = tuple(ctx.data.input_shape)
    if len(shape) != 3:
        raise ConfigError(f"augment_shift / augment_flip transform images (channels, height, width); "
                          f"{ctx.config.data.name}'s inputs have shape {list(shape)}")
    if s.augment_shift >= min(shape[1:]):
        raise ConfigError(f"augment_shift: {s.augment_shift} pixels is not below the images' size "
                          f"{shape[1]}x{shape[2]}")
    return [Augmentation(s.augment_shift, s.augment_flip)]


# order 0: innermost wrapper, so that label noise or distillation (which replace targets) wrap around it
register_plugin_factory("augmentation", _augment_plugins, order=0)
