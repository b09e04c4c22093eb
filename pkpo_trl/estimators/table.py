"""The estimators, one small function each next to its equation (notation: :mod:`pkpo_trl.estimators`), and the
table :data:`ESTIMATORS` that registers them by name with the ks each is defined for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .estimates import binom_ratio

# --------------------------------------------------------------------------------------------------
# Building blocks of the sorted forms. ``r`` holds the 1-based ranks of a group's sorted rewards among its
# scored rewards (<= 0 for unscored slots, where every weight below is 0), ``n`` and ``k`` the scored count
# and k, all float64 tensors that broadcast against the rewards.


def _s_weights(r, n, k) -> tuple[torch.Tensor, torch.Tensor]:
    """``s_(i) = [C(i-1,k-1) g_(i) + sum_{j>i} C(j-2,k-2) g_(j)] / C(n,k)`` (paper Eq. 21-22): among the
    k-subsets holding i, C(i-1,k-1) have i as their max and C(j-2,k-2) have j > i as their max.
    Returns (own, up)."""
    return binom_ratio(r - 1, k - 1, n, k), binom_ratio(r - 2, k - 2, n, k)


def _rho_others_weights(r, n, m) -> tuple[torch.Tensor, torch.Tensor]:
    """``rho(-i, m)``, the max@m estimate on the others of i: removing ``g_(i)`` keeps the ranks below i and
    lowers those above by one, ``[sum_{j<i} C(j-1,m-1) g_(j) + sum_{j>i} C(j-2,m-1) g_(j)] / C(n-1,m)``.
    Returns (below, above)."""
    return binom_ratio(r - 1, m - 1, n - 1, m), binom_ratio(r - 2, m - 1, n - 1, m)


# --------------------------------------------------------------------------------------------------
# The registry.

Weights = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]


@dataclass(frozen=True)
class Estimator:
    """A registered estimator.

    Attributes:
        name: registry name (``pkpo_estimator`` in :class:`~pkpo_trl.PKPOConfig`).
        fn: max@k estimators: ``fn(r, n, k) -> (own, up, down)``, the weights of
            ``A_(i) = own_(i) g_(i) + sum_{j>i} up_(j) g_(j) - sum_{j<i} down_(j) g_(j)`` on the sorted rewards.
            Binary-only estimators: ``fn(c, n, k) -> (A_correct, A_incorrect)`` for ``c`` correct of ``n``.
        min_others: the largest ``k`` is ``n - min_others`` (1 where ``rho(-i, k)`` needs k others; :meth:`k_range`).
        needs_others: a group with a single scored sample gets zeros (its baseline has nothing to use).
        shift_invariant: ``A`` does not change when a constant is added to the group's rewards; it is evaluated
            on rewards minus the group's smallest one, so constant groups give exact zeros.
        k_is_n: the estimator of max@n: defined only for ``k = n`` (the whole group; :meth:`k_range` is
            ``(n, n)``, so groups with NaN-dropped completions use ``k' = n'``). Read by :meth:`k_range` only.
        binary_only: defined only for 0/1 rewards; other rewards raise ``ValueError``.
        uses_k: the weights depend on k (``maxrl``'s do not: its objective is fixed, ``log pass@1``).
    """

    name: str
    fn: Callable
    min_others: int = 0
    needs_others: bool = True
    shift_invariant: bool = False
    k_is_n: bool = False
    binary_only: bool = False
    uses_k: bool = True

    def k_range(self, n: int) -> tuple[int, int]:
        """``(k_min, k_max)``, the ks this estimator is defined for in a group of ``n``: ``1 .. n - min_others``, or
        ``n`` alone where ``k_is_n`` (``k_max < 1``: no k, the group is too small). The one statement of that rule:
        PKPOConfig's validation and ``k_max``, the k callbacks' check and the trainer's eval clamp read it."""
        return (n, n) if self.k_is_n else (1, n - self.min_others)


ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str, **options) -> Callable[[Callable], Callable]:
    """Decorator: add ``fn`` to :data:`ESTIMATORS` as ``Estimator(name, fn, **options)``; a name already taken is
    an error (a second registration would silently replace the first)."""
    if name in ESTIMATORS:
        raise ValueError(f"an estimator named {name!r} is already registered ({ESTIMATORS[name].fn.__qualname__})")

    def add(fn: Callable) -> Callable:
        ESTIMATORS[name] = Estimator(name, fn, **options)
        return fn

    return add


@register_estimator("s", needs_others=False)
def s(r, n, k) -> Weights:
    """No baseline (paper Eq. 21): ``A_i = s_i``. At ``k = 1``, ``g_i / n``."""
    own, up = _s_weights(r, n, k)
    return own, up, None


@register_estimator("sloo", min_others=1)
def sloo(r, n, k) -> Weights:
    """The paper's leave-one-out baseline (Eq. 29; the seed repository's ``pkpo_core.sloo``)::

        A_i = s_i - 1/(n-1) * sum_{j != i} s_j(others of i) = s_i - k/(n-1) * rho(-i, k)

    (the ``s_j`` of the ``n-1`` others sum to ``k * rho(-i, k)``). Needs ``k <= n-1``. Not zero-sum, and
    not zero on a constant group ``c``: there ``A_i = k*c*(1/n - 1/(n-1))``. At ``k = 1`` it is Eq. 29 as
    written, ``g_i/n - mean_{j != i} g_j / (n-1)``.
    """
    own, up = _s_weights(r, n, k)
    below, above = _rho_others_weights(r, n, k)
    coef = k / (n - 1)
    return own, up - coef * above, coef * below


@register_estimator("sloo_minus_one", shift_invariant=True)
def sloo_minus_one(r, n, k) -> Weights:
    """The paper's lowest-variance estimator (Eq. 33; the default): each sample's average marginal
    contribution to the max of the k-subsets holding it::

        A_i = 1/C(n,k) * sum_{S containing i} [max S - max S minus {i}] = s_i - k/n * rho(-i, k-1)

    Sorted: i gains ``g_(i) - g_(j)`` on the C(j-1,k-2) subsets where it is the max and j the runner-up, so
    ``A_(i) = [C(i-1,k-1) g_(i) - sum_{j<i} C(j-1,k-2) g_(j)] / C(n,k)``: exactly 0 for the group's smallest
    rewards (binary: every incorrect sample) and for constant groups. At ``k = 1`` the baseline is the mean
    of the others (RLOO): ``A_i = g_i/n - sum_{j != i} g_j / (n(n-1))``.
    """
    rloo = torch.where(r >= 1, 1 / (n * (n - 1)), 0.0)
    own = torch.where(k >= 2, binom_ratio(r - 1, k - 1, n, k), torch.where(r >= 1, 1 / n, 0.0))
    down = torch.where(k >= 2, binom_ratio(r - 1, k - 2, n, k), rloo)
    up = None if bool((k >= 2).all()) else torch.where(k >= 2, 0.0, -rloo)
    return own, up, down


@register_estimator("l2o", min_others=1, shift_invariant=True)
def l2o(r, n, k) -> Weights:
    """The zero-sum leave-one-out estimator, ``A_i = s_i - k/n * rho(-i, k)``: unbiased (the baseline never
    sees ``g_i``) and ``sum_i A_i = 0`` exactly in every group (``sum_i s_i = k * rho(n, k)`` and
    ``mean_i rho(-i, k) = rho(n, k)``). It equals MaxPO's leave-two-out (L2O) construction (arXiv
    2606.06080): ``k/n * (EI_i - 1/(n-1) * sum_{j != i} EI_j^(-i))`` with ``EI_i = E_T[(g_i - max T)^+]``,
    ``T`` a (k-1)-subset of the others (``k/n * EI_i`` is ``sloo_minus_one``) and ``EI_j^(-i)`` drawing
    ``T`` from the ``n-2`` samples other than ``i`` and ``j`` (the tests check both forms by enumeration).
    Needs ``k <= n-1``. At ``k = 1`` RLOO, as ``sloo_minus_one``. Zero on constant groups.
    """
    own, up = _s_weights(r, n, k)
    below, above = _rho_others_weights(r, n, k)
    coef = k / n
    return own, up - coef * above, coef * below


# verl's ``grpo_passk`` (``compute_grpo_passk_outcome_advantage``, after Tang et al., arXiv 2503.19595): the best
# sample of the group gets ``max - second max``, every other sample 0. It is ``sloo_minus_one`` at ``k = n`` exactly
# (the only k-subset is the group, and only the best sample changes its max; tests/test_estimator_successors.py
# checks it against verl's rule), so it is registered as that function with ``k_range(n) = (n, n)``. verl divides it
# by the group's standard deviation by default (``norm_adv_by_std_in_grpo``); here that is left to ``scale_rewards``.
register_estimator("grpo_passk", shift_invariant=True, k_is_n=True)(sloo_minus_one)


@register_estimator("pass_at_k_training", needs_others=False, binary_only=True)
def pass_at_k_training(c, n, k) -> tuple[torch.Tensor, torch.Tensor]:
    """Chen et al., "Pass@k Training" (arXiv 2508.10751), analytic advantage for 0/1 rewards: with
    ``c`` correct of ``n``, ``R = 1 - C(n-c,k)/C(n,k)`` (the group's pass@k) and ``sigma = sqrt(R (1-R))``::

        A_correct = (1 - R) / sigma,   A_incorrect = (1 - R - C(n-c-1,k-1)/C(n-1,k-1)) / sigma

    i.e. each sample's mean pass@k over the k-subsets holding it, minus the group's mean, over the std of
    the subsets' 0/1 rewards. ``A = 0`` where ``sigma = 0`` (no correct sample, or fewer than k incorrect
    ones, as at ``k = n``: the numerators vanish there too). The published code adds 1e-6 to ``sigma``.
    Not an unbiased pass@k gradient (the group mean includes ``g_i``; ``1/sigma`` reweights prompts).
    At ``k = 1`` it is GRPO with the population std: ``(g_i - mean g) / std g``.
    """
    R = 1.0 - binom_ratio(n - c, k, n, k)
    sigma = torch.sqrt(R * (1.0 - R))
    safe = torch.where(sigma > 0, sigma, 1.0)
    a_correct = torch.where(sigma > 0, (1.0 - R) / safe, 0.0)
    a_incorrect = torch.where(sigma > 0, (1.0 - R - binom_ratio(n - c - 1, k - 1, n - 1, k - 1)) / safe, 0.0)
    return a_correct, a_incorrect


@register_estimator("maxrl", needs_others=False, binary_only=True, uses_k=False)
def maxrl(c, n, k) -> tuple[torch.Tensor, torch.Tensor]:
    """MaxRL (Tajwar et al., "Maximum Likelihood Reinforcement Learning", arXiv 2602.02710): the group's mean
    ``p = c/n`` as both baseline and normaliser, ``(g_i - p) / p``, here divided by ``n`` like every estimator of
    this module (``sum_i A_i grad log p(x_i)`` is the group's gradient estimate, not its mean)::

        A_correct = (n - c) / (n c),   A_incorrect = -1 / n,   A = 0 where c = 0

    ``1/p`` re-weights each prompt toward the gradient of ``log pass@1`` (maximum likelihood of a success). Its
    expectation is exactly the gradient of the truncated objective ``sum_{k=1..n-1} (1/k) pass@k``, i.e.
    ``(1 - (1-p)^(n-1)) / p`` for success probability ``p``: the successes' term alone,
    ``(1/c) sum_{i correct} grad log p(x_i)``, gives ``T = n``, and the mean baseline, which sees ``g_i``, removes
    ``(1-p)^(n-1)`` of it (tests/test_maxrl.py checks both, exactly and by Monte Carlo). So MaxRL is biased for
    ``T = n`` and for ``log pass@1`` (by ``-(1-p)^(n-1)`` and ``-(1-p)^(n-1)/p``), and unbiased for ``T = n-1``,
    the objective of ``pkpo_k="harmonic:<n-1>"``, which estimates it with PKPO's baselines (and works for
    continuous rewards). 0/1 rewards only; k is not used.
    """
    mean = c / n
    safe = torch.where(c > 0, mean, 1.0)
    a_correct = torch.where(c > 0, (1.0 - mean) / (n * safe), 0.0)
    a_incorrect = torch.where(c > 0, -1.0 / n, 0.0)
    return a_correct, a_incorrect
