"""Input-output Jacobian norms ``||d f(x_i) / d x_i||`` per training point, by vmap.

``f`` is the model's output (logits for classification). For each point the
Jacobian is an ``out x in`` matrix (inputs flattened); we report its Frobenius
and spectral (largest singular value) norms, and their mean and maximum over the
dataset. The sample maximum of the spectral norm is MacDonald et al. (2023)'s
estimate of the network's Lipschitz constant on the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlab.objective import Objective, Params


@dataclass
class JacobianNorms:
    """Per-point Frobenius and spectral norms of the input-output Jacobian."""

    frobenius: torch.Tensor  # (n,)
    spectral: torch.Tensor   # (n,)

    def summary(self) -> dict[str, float]:
        """Mean and maximum of both norms (the keys the tracking callback and reports use)."""
        return {"jacobian_fro_mean": float(self.frobenius.mean()), "jacobian_fro_max": float(self.frobenius.max()),
                "jacobian_spec_mean": float(self.spectral.mean()), "jacobian_spec_max": float(self.spectral.max())}


def jacobian_norms(objective: Objective, x: torch.Tensor | None = None, params: Params | None = None,
                   batch_size: int | None = None, indices: torch.Tensor | None = None) -> JacobianNorms:
    """Frobenius and spectral norms of ``d f(x_i)/d x_i`` for every row of ``x`` (default: the training set, or
    its points ``indices``, streamed batch by batch)."""
    if x is None:
        blocks = (xb for xb, _ in objective.chunks(indices))
    else:
        step = batch_size or objective.batch_size
        blocks = (x[start:start + step] for start in range(0, len(x), step))
    fro, spec = [], []
    for xb in blocks:
        J = objective.input_jacobian(xb, params)
        J = J.reshape(J.shape[0], J.shape[1], -1)
        fro.append(torch.linalg.matrix_norm(J, ord="fro").detach())
        spec.append(torch.linalg.matrix_norm(J, ord=2).detach())
    return JacobianNorms(torch.cat(fro), torch.cat(spec))
