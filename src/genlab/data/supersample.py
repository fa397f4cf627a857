"""The super-sample of the conditional-mutual-information bound (Steinke & Zakynthinou 2020; Haghifam et al. 2020).

Haghifam et al.'s bound for Langevin dynamics conditions on a super-sample of pairs ``(Z_{i,0}, Z_{i,1})`` drawn
i.i.d. from the data distribution and a selector ``U`` of independent fair coins: the training set holds
``Z_{i,U_i}`` and the prior knows both members of every pair but not ``U``. Only the pairs whose membership
the prior does not know (the ``k = n - m`` *bound pairs*) need a second member; the other ``m`` training points
are shared by every ``U``.

:func:`draw_supersample` builds that from a :class:`~genlab.data.Dataset`: ``k`` training positions are paired with ``k``
points of the training split beyond ``n_train`` (the same distribution, untouched by training and by the test
figures), both drawn from ``supersample_seed``, and a coin per pair from ``selector_seed`` decides which member
trains. ``genlab train`` uses the run's seed for both unless told otherwise, so that the seeds that estimate
the bound's expectation draw the super-sample afresh too (the bound is on ``E_Z I(W; U | Z)``; a fixed
super-sample would estimate it at one, possibly easy, pair). The other member is the pair's *ghost*, kept in ``x_ghost``; ``x_heldout`` loses the
ghosts, so whatever else is estimated on held-out points (SGLD's noise covariance) does not depend on ``U``.
"""

from __future__ import annotations

import dataclasses

import torch

from genlab.data import Dataset
from genlab.errors import ConfigError
from genlab.seeding import keyed_generator


def bound_pairs(n: int, k: int, supersample_seed: int) -> torch.Tensor:
    """The ``k`` training positions that are paired (uniformly at random from ``supersample_seed``)."""
    if not 1 <= k < n:
        raise ConfigError(f"sgld_prior_size: the bound pairs n - m must be in [1, n - 1] = [1, {n - 1}] (got {k})")
    return torch.randperm(n, generator=keyed_generator(supersample_seed, 0, 8))[:k].sort().values


def ghost_rows(spare: int, k: int, supersample_seed: int) -> torch.Tensor:
    """Which ``k`` of the ``spare`` points beyond ``n_train`` are the pairs' second members (in pair order)."""
    return torch.randperm(spare, generator=keyed_generator(supersample_seed, 0, 10))[:k]


def selector(k: int, selector_seed: int) -> torch.Tensor:
    """``U``: one fair coin per bound pair (1: the pair's second member, from beyond ``n_train``, trains)."""
    return torch.randint(0, 2, (k,), generator=keyed_generator(selector_seed, 0, 9), dtype=torch.long)


def draw_supersample(data: Dataset, k: int, *, supersample_seed: int, selector_seed: int) -> Dataset:
    """``data`` with ``k`` bound pairs: the training set is ``Z_{i,U_i}``, the ghosts ``Z_{i,1-U_i}``.

    Returns a new :class:`Dataset` whose ``x_train``/``y_train``/``labels_train`` hold the selected members,
    ``x_ghost``/``y_ghost`` the other members (row ``j`` pairs with training position ``ghost_of[j]``) and
    ``x_heldout``/``y_heldout`` the held-out points beyond the ghosts; ``info["supersample"]`` records the
    choices. Refuses label noise (the ghosts would come from the clean distribution, the members from the
    corrupted one) and a training split without ``k`` points beyond ``n_train``.
    """
    if data.info.get("label_noise"):
        raise ConfigError("label_noise: must be 0 with --sgld-bound cmi (a pair's members must come from one "
                          "distribution; the ghosts would be clean and the training points corrupted)")
    n = len(data.x_train)
    positions = bound_pairs(n, k, supersample_seed)
    spare = 0 if data.x_heldout is None else len(data.x_heldout)
    if spare < k:
        raise ConfigError(f"--sgld-bound cmi pairs {k} training points with points of the training split beyond "
                          f"n_train, and {data.name} has {spare} there: lower --n-train or raise --sgld-prior-size")
    u = selector(k, selector_seed).bool()
    rows = ghost_rows(spare, k, supersample_seed)
    x, y = data.x_train.clone(), data.y_train.clone()
    gx, gy = data.x_heldout[rows].clone(), data.y_heldout[rows].clone()
    swap = positions[u]
    x[swap], gx[u] = gx[u].clone(), data.x_train[swap]
    y[swap], gy[u] = gy[u].clone(), data.y_train[swap]
    labels = None
    if data.labels_train is not None:
        labels = y.argmax(dim=1) if y.dim() == 2 else y.clone()
    info = {**data.info, "supersample": {"pairs": k, "supersample_seed": supersample_seed,
                                         "selector_seed": selector_seed}}
    rest = torch.ones(spare, dtype=torch.bool)
    rest[rows] = False
    rest_x = data.x_heldout[rest] if spare > k else None
    rest_y = data.y_heldout[rest] if spare > k else None
    return dataclasses.replace(data, x_train=x, y_train=y, labels_train=labels, x_heldout=rest_x, y_heldout=rest_y,
                               x_ghost=gx, y_ghost=gy, ghost_of=positions, info=info)
