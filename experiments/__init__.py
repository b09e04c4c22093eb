"""Reproductions of the PKPO paper's toy experiments (Walder & Karkhanis, arXiv 2505.15201).

- :mod:`.toy`: the 1D problem ``x ~ N(theta, 0.1^2)``, ``g(x) = x^2`` on ``[0, 1]``; exact ``maxg@k(theta)``,
  its gradient, the optimal ``theta`` per ``k`` (Figure 1) and score-function gradient estimates.
- :mod:`.variance`: variance of the gradient estimators vs ``k`` (Figure 4).
- :mod:`.training`: SGD on ``theta`` with fixed ``k`` and with ``k`` annealing.
- :mod:`.runner` and ``python -m experiments``: everything at once; the figures are in
  :mod:`.plots`.

All estimator math comes from :mod:`pkpo_trl.estimators`; nothing here re-implements it.
"""

from .toy import (
    SIGMA,
    exact_grad_maxg_at_k,
    exact_maxg_at_k,
    gradient_estimates,
    mc_maxg_at_k,
    optimal_theta,
    reward,
    reward_cdf,
    sample_policy,
    score,
)
from .training import TrainingResult, train_schedules, train_theta
from .variance import DEFAULT_ESTIMATORS, VarianceResult, gradient_variance

__all__ = [
    "DEFAULT_ESTIMATORS",
    "SIGMA",
    "TrainingResult",
    "VarianceResult",
    "exact_grad_maxg_at_k",
    "exact_maxg_at_k",
    "gradient_estimates",
    "gradient_variance",
    "mc_maxg_at_k",
    "optimal_theta",
    "reward",
    "reward_cdf",
    "sample_policy",
    "score",
    "train_schedules",
    "train_theta",
]
