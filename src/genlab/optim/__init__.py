"""Noisy training dynamics as ``torch.optim`` optimizers: SGLD with structured noise, IVON and variational GD.

:mod:`genlab.optim.noise` builds the noise covariances from per-sample gradients (never ``d x d``);
:class:`~genlab.optim.sgld.SGLD` takes steps with them and accounts Wang et al.'s information-theoretic
bound along the way. :mod:`genlab.optim.ivon` holds the variational learners (:class:`IVON`,
:class:`VariationalGD`) and the variational-learning stability threshold.
"""

from genlab.optim.noise import SHAPES, NoiseCovariance, closed_form_kl_ratio, noise_covariance
from genlab.bounds.infotheory import bound_over_seeds, information_bound
from genlab.optim.ivon import IVON, VariationalGD, posterior_predictive, variational_factor, vl_threshold
from genlab.optim.sgld import SGLD

__all__ = ["SHAPES", "NoiseCovariance", "noise_covariance", "closed_form_kl_ratio", "SGLD", "information_bound",
           "bound_over_seeds", "IVON", "VariationalGD", "posterior_predictive", "vl_threshold", "variational_factor"]
