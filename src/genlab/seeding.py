"""Random generators keyed by integers: every random choice a run makes is a function of (seed, step, ...) alone,
so a resumed run draws exactly what an uninterrupted one would."""

from __future__ import annotations

import numpy as np
import torch


def keyed_generator(*keys: int) -> torch.Generator:
    """A fresh ``torch.Generator`` seeded from ``keys`` through numpy's ``SeedSequence`` (well-mixed, order-aware)."""
    state = int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])
    return torch.Generator().manual_seed(state)
