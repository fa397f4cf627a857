"""Noisy training dynamics as ``torch.optim`` optimizers: SGLD with structured noise (more to come: IVON).

:mod:`genlab.optim.noise` builds the noise covariances from per-sample gradients (never ``d x d``);
:class:`~genlab.optim.sgld.SGLD` takes steps with them and accounts Wang et al.'s information-theoretic
bound along the way.
"""

from genlab.optim.noise import SHAPES, NoiseCovariance, closed_form_kl_ratio, noise_covariance
from genlab.bounds.infotheory import information_bound
from genlab.optim.sgld import SGLD

__all__ = ["SHAPES", "NoiseCovariance", "noise_covariance", "closed_form_kl_ratio", "SGLD", "information_bound"]
