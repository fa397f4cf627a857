"""Curvature and Jacobian diagnostics, matrix-free on top of the Objective.

Operators (:mod:`~genlab.curvature.operators`) are snapshots of a curvature
matrix at given parameters; solvers take any of them:

* :func:`lanczos` / :func:`power_iteration`: top eigenpairs (sharpness);
* :func:`hutchinson` / :func:`hutchpp`: trace;
* :func:`slq`: spectral density;
* :func:`gradient_covariance`: per-sample gradient covariance via the Gram matrix;
* :func:`jacobian_norms`: input-output Jacobian norms per training point;
* :class:`SharpnessTracker`: a training callback recording them every k steps.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from genlab.objective import Objective
    >>> from genlab.curvature import HessianOperator, lanczos
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    >>> obj = Objective(model, torch.randn(50, 5).double(), torch.randint(0, 3, (50,)), "ce")
    >>> H = HessianOperator(obj)
    >>> top = lanczos(H, k=2, tol=1e-8)
    >>> exact = torch.linalg.eigvalsh(H.dense()).flip(0)[:2]
    >>> bool(torch.allclose(top.eigenvalues, exact, rtol=1e-6))
    True
"""

from genlab.curvature.density import SpectralDensity, slq
from genlab.curvature.gradcov import GradientCovariance, gradient_covariance, stacked_per_sample_grads
from genlab.curvature.jacobian import JacobianNorms, jacobian_norms
from genlab.curvature.lanczos import EigenResult, lanczos, power_iteration
from genlab.curvature.operators import (CurvatureOperator, EmpiricalFisherOperator, GaussNewtonOperator,
                                        HessianOperator, PreconditionedOperator, flat_per_sample_grads)
from genlab.curvature.trace import TraceEstimate, hutchinson, hutchpp
from genlab.curvature.tracking import SharpnessTracker, preconditioned_threshold, stability_threshold

__all__ = ["CurvatureOperator", "HessianOperator", "GaussNewtonOperator", "EmpiricalFisherOperator",
           "PreconditionedOperator", "flat_per_sample_grads", "lanczos", "power_iteration", "EigenResult",
           "hutchinson", "hutchpp", "TraceEstimate", "slq", "SpectralDensity", "gradient_covariance",
           "GradientCovariance", "stacked_per_sample_grads", "jacobian_norms", "JacobianNorms", "SharpnessTracker",
           "stability_threshold", "preconditioned_threshold"]
