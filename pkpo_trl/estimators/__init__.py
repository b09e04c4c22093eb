"""The math of PKPO: unbiased pass@k / max@k estimates and the reward transformations built on them.

Pure torch, no TRL. Every function works on a batch of groups ``rewards[..., n]``: the last dimension
holds the ``n`` rewards of one prompt's completions.

Notation (Walder & Karkhanis, "Pass@K Policy Optimization", arXiv 2505.15201): ``g_(1) <= ... <= g_(n)``
are a group's rewards sorted ascending, ``C(a, b)`` the binomial coefficient, ``rho(n, k)`` the unbiased
max@k estimate (paper Eq. 19; Eq. 8 for 0/1 rewards)::

    rho(n, k) = 1/C(n, k) * sum_i C(i-1, k-1) * g_(i)

and ``rho(-i, m)`` the same estimate on the ``n - 1`` rewards other than ``g_i``. The transformed rewards
``A_i`` replace the raw rewards in ``sum_i A_i * grad log p(x_i)``. Each estimator is one small function
in :mod:`.table`, next to its equation, registered by name in :data:`ESTIMATORS` (the table that
:class:`~pkpo_trl.PKPOConfig` validates against):

=======================  ==========================================================================
estimator                ``A_i``
=======================  ==========================================================================
``s``                    ``s_i = 1/C(n,k) * sum_{|S|=k, S containing i} max_{j in S} g_j`` (Eq. 21)
``sloo``                 ``s_i - k/(n-1) * rho(-i, k)``: the paper's leave-one-out baseline (Eq. 29)
``sloo_minus_one``       ``s_i - k/n * rho(-i, k-1)`` (Eq. 33; default): i's marginal contribution
``l2o``                  ``s_i - k/n * rho(-i, k)``: the zero-sum leave-one-out estimator (MaxPO's L2O)
``grpo_passk``           ``sloo_minus_one`` at ``k = n``: the best sample gets ``max - second max`` (verl)
``pass_at_k_training``   Chen et al.'s analytic pass@k advantage, 0/1 rewards only
``maxrl``                MaxRL's ``(g_i - mean) / (n * mean)`` (Tajwar et al.), 0/1 rewards only, no k
=======================  ==========================================================================

The package's public face is this module; its parts, each one idea: :mod:`.inputs` (checks, sorting),
:mod:`.estimates` (binomial ratios, :func:`pass_at_k`, :func:`maxg_at_k`, and the adaptive-k rule
:func:`k_from_success_rate`), :mod:`.table` (the estimators and :data:`ESTIMATORS`) and :mod:`.transform`
(:func:`transform_rewards`, :func:`transform_rewards_mixture`: sorting, NaN handling, a k per group, mixtures of k).
"""

from .estimates import k_from_success_rate, maxg_at_k, pass_at_k
from .inputs import is_binary
from .table import ESTIMATORS, Estimator, register_estimator
from .transform import transform_rewards, transform_rewards_mixture

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "is_binary",
    "k_from_success_rate",
    "maxg_at_k",
    "pass_at_k",
    "register_estimator",
    "transform_rewards",
    "transform_rewards_mixture",
]
