"""Shared test helpers."""

from genlab.train import Callback


class Crash(Callback):
    """Simulates a kill: raises (no checkpoint is written) after step ``at``."""

    class Boom(Exception):
        pass

    def __init__(self, at):
        self.at = at

    def on_step_end(self, state):
        if state.step == self.at:
            raise self.Boom


# A model and DataLoaders by module-level factories, as a user's fit() run records them (spawned ranks of
# `genlab curvature --nproc` rebuild the run from them; this module is importable there as it is here).
def make_small_model():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def make_fixed_loaders(n: int = 124, batch_size: int = 32):
    """(train, test) DataLoaders over seeded Gaussian inputs with 3 classes, read in order."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(1)
    x, xt = torch.randn(n, 5, generator=g), torch.randn(40, 5, generator=g)
    label = lambda a: (a[:, 0] > 0).long() + (a[:, 1] > 0.5).long()  # noqa: E731
    return (DataLoader(TensorDataset(x, label(x)), batch_size=batch_size),
            DataLoader(TensorDataset(xt, label(xt)), batch_size=batch_size))
