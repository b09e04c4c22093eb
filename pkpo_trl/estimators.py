"""Unbiased pass@k / max@k estimators and the PKPO reward transformation.

Pure torch, no TRL. Every function works on a batch of groups ``rewards[..., n]``: the last dimension
holds the ``n`` rewards of one prompt's completions.

Notation (Walder & Karkhanis, "Pass@K Policy Optimization", arXiv 2505.15201): ``g_(1) <= ... <= g_(n)``
are a group's rewards sorted ascending, ``C(a, b)`` the binomial coefficient, ``rho(n, k)`` the unbiased
max@k estimate (paper Eq. 19; Eq. 8 for 0/1 rewards)::

    rho(n, k) = 1/C(n, k) * sum_i C(i-1, k-1) * g_(i)

and ``rho(-i, m)`` the same estimate on the ``n - 1`` rewards other than ``g_i``. The transformed rewards
``A_i`` replace the raw rewards in ``sum_i A_i * grad log p(x_i)``. Each estimator is one small function
below, registered by name in :data:`ESTIMATORS` (the table :class:`~pkpo_trl.PKPOConfig` validates against):

=======================  ==========================================================================
estimator                ``A_i``
=======================  ==========================================================================
``s``                    ``s_i = 1/C(n,k) * sum_{|S|=k, S containing i} max_{j in S} g_j`` (Eq. 21)
``sloo``                 ``s_i - k/(n-1) * rho(-i, k)``: the paper's leave-one-out baseline (Eq. 29)
``sloo_minus_one``       ``s_i - k/n * rho(-i, k-1)`` (Eq. 33; default): i's marginal contribution
``l2o``                  ``s_i - k/n * rho(-i, k)``: the zero-sum leave-one-out estimator (MaxPO's L2O)
``grpo_passk``           best sample ``max - second max``, others 0 (Tang et al.; verl), ``k = n`` only
``pass_at_k_training``   Chen et al.'s analytic pass@k advantage, 0/1 rewards only
=======================  ==========================================================================

Ratios of binomial coefficients are evaluated in log space (``lgamma``) so that groups of thousands of
samples stay finite. Every estimator runs on the sorted rewards: ``O(n log n)`` per group, one vectorised
call for the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "is_binary",
    "maxg_at_k",
    "pass_at_k",
    "register_estimator",
    "transform_rewards",
]

# --------------------------------------------------------------------------------------------------
# Binomial ratios in log space.


def _log_binom(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log C(a, b) for float64 tensors, -inf where C(a, b) = 0 (b < 0 or b > a or a < 0)."""
    valid = (b >= 0) & (b <= a) & (a >= 0)
    a_, b_ = torch.where(valid, a, 0.0), torch.where(valid, b, 0.0)
    out = torch.lgamma(a_ + 1) - torch.lgamma(b_ + 1) - torch.lgamma(a_ - b_ + 1)
    return torch.where(valid, out, -torch.inf)


def _binom_ratio(a, b, c, d) -> torch.Tensor:
    """C(a, b) / C(c, d); 0 where C(a, b) = 0 (callers keep C(c, d) > 0)."""
    return torch.exp(_log_binom(a, b) - _log_binom(c, d))


def _exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    """``sum_{j<i} x_j`` along the last dimension."""
    return torch.cumsum(x, dim=-1) - x


def _exclusive_reverse_cumsum(x: torch.Tensor) -> torch.Tensor:
    """``sum_{j>i} x_j`` along the last dimension."""
    return torch.flip(torch.cumsum(torch.flip(x, dims=[-1]), dim=-1), dims=[-1]) - x


# --------------------------------------------------------------------------------------------------
# The sorted-form building blocks. Arguments: ``g`` a group's rewards sorted ascending (unscored slots 0,
# placed first), ``r`` their 1-based ranks among the scored rewards (<= 0 for unscored slots), ``n`` and
# ``k`` the scored count and k as float64 tensors that broadcast against ``g``. Without NaNs ``r``, ``n``
# and ``k`` have no batch dimension, so every binomial weight is computed once per call, not per group.


def _s(g, r, n, k) -> torch.Tensor:
    """``s_(i) = [C(i-1,k-1) g_(i) + sum_{j>i} C(j-2,k-2) g_(j)] / C(n,k)`` (paper Eq. 21-22): among the
    k-subsets holding i, C(i-1,k-1) have i as their max and C(j-2,k-2) have j > i as their max."""
    own = _binom_ratio(r - 1, k - 1, n, k)
    up = _binom_ratio(r - 2, k - 2, n, k)
    return own * g + _exclusive_reverse_cumsum(up * g)


def _rho_others(g, r, n, m) -> torch.Tensor:
    """``rho(-i, m)``: max@m estimate on the others of i. Removing ``g_(i)`` keeps the ranks below i and
    lowers those above by one: ``[sum_{j<i} C(j-1,m-1) g_(j) + sum_{j>i} C(j-2,m-1) g_(j)] / C(n-1,m)``."""
    below = _binom_ratio(r - 1, m - 1, n - 1, m)
    above = _binom_ratio(r - 2, m - 1, n - 1, m)
    return _exclusive_cumsum(below * g) + _exclusive_reverse_cumsum(above * g)


def _centred(g, r) -> torch.Tensor:
    """Rewards minus the group's largest one. Shift-invariant estimators evaluate on these, so that a group
    of equal rewards is all zeros and gives exactly zero advantages (not 1e-17), whatever its value."""
    return torch.where(r >= 1, g - g[..., -1:], 0.0)


def _tie_block_starts(g, r) -> torch.Tensor:
    """Index of the first slot of each slot's block of tied scored rewards. A symmetric estimator gives tied
    samples equal values and the sorted forms are exact at any rank of a tie block; reading every slot's
    value at its block's first rank makes ties exactly equal (and a block at the bottom exactly 0 where the
    estimator gives the minimum 0)."""
    idx = torch.arange(g.shape[-1], device=g.device).expand(g.shape)
    starts = torch.ones_like(g, dtype=torch.bool)
    starts[..., 1:] = (g[..., 1:] != g[..., :-1]) | (r[..., 1:] == 1)
    return torch.cummax(torch.where(starts, idx, 0), dim=-1).values


# --------------------------------------------------------------------------------------------------
# The registry.

EstimatorFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Estimator:
    """A registered estimator.

    Attributes:
        name: registry name (``pkpo_estimator`` in :class:`~pkpo_trl.PKPOConfig`).
        fn: ``fn(g, r, n, k) -> A`` on sorted groups (see the building blocks above).
        min_others: the largest ``k`` is ``n - min_others`` (1 where ``rho(-i, k)`` needs k others).
        needs_others: a group with a single scored sample gets zeros (its baseline has nothing to use).
        k_is_n: defined only for ``k = n`` (the whole group); NaN-dropped groups use ``k' = n'``.
        binary_only: defined only for 0/1 rewards; other rewards raise ``ValueError``.
    """

    name: str
    fn: EstimatorFn
    min_others: int = 0
    needs_others: bool = True
    k_is_n: bool = False
    binary_only: bool = False


ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str, **options) -> Callable[[EstimatorFn], EstimatorFn]:
    """Decorator: add ``fn`` to :data:`ESTIMATORS` as ``Estimator(name, fn, **options)``."""

    def add(fn: EstimatorFn) -> EstimatorFn:
        ESTIMATORS[name] = Estimator(name, fn, **options)
        return fn

    return add


@register_estimator("s", needs_others=False)
def s(g, r, n, k):
    """No baseline (paper Eq. 21): ``A_i = s_i``. At ``k = 1``, ``g_i / n``."""
    return _s(g, r, n, k)


@register_estimator("sloo", min_others=1)
def sloo(g, r, n, k):
    """The paper's leave-one-out baseline (Eq. 29; the seed repository's ``pkpo_core.sloo``)::

        A_i = s_i - 1/(n-1) * sum_{j != i} s_j(others of i) = s_i - k/(n-1) * rho(-i, k)

    (the ``s_j`` of the ``n-1`` others sum to ``k * rho(-i, k)``). Needs ``k <= n-1``. Not zero-sum, and
    not zero on a constant group ``c``: there ``A_i = k*c*(1/n - 1/(n-1))``. At ``k = 1`` it is Eq. 29 as
    written, ``g_i/n - mean_{j != i} g_j / (n-1)``.
    """
    return _s(g, r, n, k) - k / (n - 1) * _rho_others(g, r, n, k)


@register_estimator("sloo_minus_one")
def sloo_minus_one(g, r, n, k):
    """The paper's lowest-variance estimator (Eq. 33; the default): each sample's average marginal
    contribution to the max of the k-subsets holding it::

        A_i = 1/C(n,k) * sum_{S containing i} [max S - max S minus {i}] = s_i - k/n * rho(-i, k-1)

    Sorted: i gains ``g_(i) - g_(j)`` on the C(j-1,k-2) subsets where it is the max and j the runner-up, so
    ``A_(i) = [C(i-1,k-1) g_(i) - sum_{j<i} C(j-1,k-2) g_(j)] / C(n,k)``: exactly 0 for the group's smallest
    rewards (binary: every incorrect sample) and, shift-invariant, for constant groups. At ``k = 1`` the
    baseline is the mean of the others (RLOO): ``A_i = (g_i - mean_{j != i} g_j) / n``.
    """
    g = _centred(g, r)
    marginal = _binom_ratio(r - 1, k - 1, n, k) * g - _exclusive_cumsum(_binom_ratio(r - 1, k - 2, n, k) * g)
    rloo = (g - (g.sum(-1, keepdim=True) - g) / (n - 1)) / n
    return torch.where(k >= 2, marginal, rloo)


@register_estimator("l2o", min_others=1)
def l2o(g, r, n, k):
    """The zero-sum leave-one-out estimator, ``A_i = s_i - k/n * rho(-i, k)``: unbiased (the baseline never
    sees ``g_i``) and ``sum_i A_i = 0`` exactly in every group (``sum_i s_i = k * rho(n, k)`` and
    ``mean_i rho(-i, k) = rho(n, k)``). It equals MaxPO's leave-two-out (L2O) construction (arXiv
    2606.06080): ``k/n * (EI_i - 1/(n-1) * sum_{j != i} EI_j^(-i))`` with ``EI_i = E_T[(g_i - max T)^+]``,
    ``T`` a (k-1)-subset of the others (``k/n * EI_i`` is ``sloo_minus_one``) and ``EI_j^(-i)`` drawing
    ``T`` from the ``n-2`` samples other than ``i`` and ``j`` (the tests check both forms by enumeration).
    Needs ``k <= n-1``. At ``k = 1`` RLOO, as ``sloo_minus_one``. Shift-invariant: zero on constant groups.
    """
    g = _centred(g, r)
    return _s(g, r, n, k) - k / n * _rho_others(g, r, n, k)


@register_estimator("grpo_passk", k_is_n=True)
def grpo_passk(g, r, n, k):
    """verl's ``grpo_passk`` (``compute_grpo_passk_outcome_advantage``, after Tang et al., arXiv
    2503.19595): the best sample of the group gets ``max - second max``, every other sample 0. It is the
    pass@n / max@n estimator (``k = n`` only) and equals ``sloo_minus_one`` at ``k = n`` exactly (the only
    subset is the group; only the best sample changes its max). verl divides it by the group's standard
    deviation by default (``norm_adv_by_std_in_grpo``); here that is left to ``scale_rewards``.
    """
    if g.shape[-1] < 2:  # a single sample has no runner-up (the group gets zeros)
        return torch.zeros_like(g)
    best = r == n
    return torch.where(best, g[..., -1:] - g[..., -2:-1], 0.0)


@register_estimator("pass_at_k_training", needs_others=False, binary_only=True)
def pass_at_k_training(g, r, n, k):
    """Chen et al., "Pass@k Training" (arXiv 2508.10751), analytic advantage for 0/1 rewards: with
    ``c`` correct of ``n``, ``R = 1 - C(n-c,k)/C(n,k)`` (the group's pass@k) and ``sigma = sqrt(R (1-R))``::

        A_correct = (1 - R) / sigma,   A_incorrect = (1 - R - C(n-c-1,k-1)/C(n-1,k-1)) / sigma

    i.e. each sample's mean pass@k over the k-subsets holding it, minus the group's mean, over the std of
    the subsets' 0/1 rewards. ``A = 0`` where ``sigma = 0`` (no correct sample, or fewer than k incorrect
    ones, as at ``k = n``: the numerators vanish there too). The published code adds 1e-6 to ``sigma``.
    Not an unbiased pass@k gradient (the group mean includes ``g_i``; ``1/sigma`` reweights prompts).
    At ``k = 1`` it is GRPO with the population std: ``(g_i - mean g) / std g``.
    """
    correct = (g == 1) & (r >= 1)
    c = correct.sum(-1, keepdim=True).to(g.dtype)
    R = 1.0 - _binom_ratio(n - c, k, n, k)
    sigma = torch.sqrt(R * (1.0 - R))
    a_incorrect = 1.0 - R - _binom_ratio(n - c - 1, k - 1, n - 1, k - 1)
    out = torch.where(correct, 1.0 - R, a_incorrect) / torch.where(sigma > 0, sigma, 1.0)
    return torch.where(sigma > 0, out, 0.0)


# --------------------------------------------------------------------------------------------------
# Inputs.


def _as_float64(rewards) -> tuple[torch.Tensor, torch.dtype]:
    """float64 tensor and the output dtype (the input's if floating, else torch's default). In list or
    numpy input, ``None`` (TRL's "not scored") becomes NaN."""
    if not isinstance(rewards, torch.Tensor):
        floating = isinstance(rewards, np.ndarray) and rewards.dtype.kind == "f"
        out_dtype = torch.from_numpy(rewards[:0]).dtype if floating else torch.get_default_dtype()
        return torch.from_numpy(np.array(rewards, dtype=np.float64)), out_dtype
    out_dtype = rewards.dtype if rewards.is_floating_point() else torch.get_default_dtype()
    return rewards.to(torch.float64), out_dtype


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        # numpy and 0-d torch integers are fine; floats (even 2.0) are a caller bug.
        if hasattr(k, "dtype") and not getattr(k.dtype, "is_floating_point", True) and k.ndim == 0:
            k = int(k)
        elif type(k).__module__ == "numpy" and "int" in type(k).__name__:
            k = int(k)
        else:
            raise ValueError(f"k must be an integer, got {k!r} of type {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got k={k}")
    return k


def _check_rewards(rewards: torch.Tensor) -> int:
    """``n``, after checking the shape and that no reward is infinite."""
    if rewards.ndim == 0:
        raise ValueError("rewards must have shape [..., n] with one group of n rewards in the last dim")
    n = rewards.shape[-1]
    if n == 0:
        raise ValueError("empty group: rewards has size 0 in its last (group) dimension")
    if bool(torch.isinf(rewards).any()):
        raise ValueError("rewards contain inf; use NaN to mark a completion that could not be scored")
    return n


def is_binary(rewards: torch.Tensor, may_have_nan: bool = True) -> bool:
    """Whether every scored (non-NaN) reward is 0 or 1: pass@k rewards rather than max@k ones."""
    binary = (rewards == 0) | (rewards == 1)
    if may_have_nan:
        binary |= torch.isnan(rewards)
    return bool(binary.all())


# --------------------------------------------------------------------------------------------------
# Sorting.

# On CPU numpy's argsort beats torch.sort (torch 2.13, one thread: about 5x for rows of 64-256, 2x at 4096);
# other devices use torch.sort. tests/test_estimators.py runs both.
_NUMPY_SORT_ON_CPU = True


def _sort_groups(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sort each group ascending with NaNs first.

    Returns the sorted rewards (NaN slots 0), their 1-based ranks among the scored rewards (<= 0 for NaN
    slots), the scored count ``n'`` (``[..., 1]``, or ``[1]`` when nothing is NaN so that the weights are
    shared by the batch) and the sorting permutation.
    """
    n = g.shape[-1]
    nan = torch.isnan(g)
    keys = torch.where(nan, -torch.inf, g)
    if _NUMPY_SORT_ON_CPU and g.device.type == "cpu":
        order = torch.from_numpy(np.argsort(keys.detach().numpy(), axis=-1))
        g_sorted = keys.gather(-1, order)
    else:
        g_sorted, order = keys.sort(dim=-1)
    if bool(nan.any()):
        n_valid = (~nan).sum(-1, keepdim=True).to(torch.float64)
    else:
        n_valid = torch.full((1,), float(n), dtype=torch.float64, device=g.device)
    ranks = torch.arange(1, n + 1, dtype=torch.float64, device=g.device) - (n - n_valid)
    return torch.where(ranks >= 1, g_sorted, 0.0), ranks, n_valid, order


# --------------------------------------------------------------------------------------------------
# Public API.


def maxg_at_k(rewards, k: int) -> torch.Tensor:
    """Unbiased estimate of max@k (pass@k for 0/1 rewards) for each group.

    ``rho(n, k) = 1/C(n,k) * sum_i C(i-1, k-1) * g_(i)`` with rewards sorted ascending (paper Eq. 19);
    for binary rewards with ``c`` correct this is ``1 - C(n-c, k)/C(n, k)`` (Eq. 8, Chen et al. 2021).

    Args:
        rewards: ``[..., n]`` rewards; NaN (or ``None`` in a list) marks an unscored completion, which is
            dropped from its group (a group with fewer than ``k`` scored completions uses ``k' = n'``, one
            with none gives NaN).
        k: number of attempts, ``1 <= k <= n``.

    Returns:
        ``[...]`` estimates in the input's floating dtype.
    """
    g, out_dtype = _as_float64(rewards)
    n = _check_rewards(g)
    k = _check_k(k)
    if k > n:
        raise ValueError(f"k={k} > n={n}: no unbiased estimator of max@k exists from fewer than k samples")
    g_sorted, ranks, n_valid, _ = _sort_groups(g)
    kk = torch.clamp(torch.full_like(n_valid, float(k)), max=n_valid)
    out = (_binom_ratio(ranks - 1, kk - 1, n_valid, kk) * g_sorted).sum(-1, keepdim=True)
    out = torch.where(n_valid > 0, out, torch.nan)
    return out.squeeze(-1).to(out_dtype)


def pass_at_k(num_samples, num_correct, k: int) -> torch.Tensor:
    """Closed-form unbiased pass@k, ``1 - C(n-c, k) / C(n, k)`` (paper Eq. 8), elementwise.

    Args:
        num_samples: ``n``, int or integer tensor.
        num_correct: ``c``, int or integer tensor broadcastable with ``num_samples``.
        k: ``1 <= k <= n``.

    Returns:
        float64 tensor of estimates.
    """
    k = _check_k(k)
    n = torch.as_tensor(num_samples, dtype=torch.float64)
    c = torch.as_tensor(num_correct, dtype=torch.float64)
    if (n != n.round()).any() or (c != c.round()).any():
        raise ValueError("num_samples and num_correct must be integers")
    if (k > n).any():
        raise ValueError(f"k={k} exceeds num_samples={n.min().item():.0f}")
    if ((c < 0) | (c > n)).any():
        raise ValueError("num_correct must lie in [0, num_samples]")
    kk = torch.full_like(n + c, float(k))
    return 1.0 - _binom_ratio(n - c, kk, n, kk)


def transform_rewards(rewards, k: int, estimator: str = "sloo_minus_one") -> torch.Tensor:
    """PKPO-transformed rewards ``A_i`` for every completion of every group.

    Each estimator is documented at its function in this module (formula and paper equation); all but
    ``pass_at_k_training`` give an unbiased estimate of the gradient of max@k (pass@k for 0/1 rewards):
    ``E[sum_i A_i grad log p(x_i)] = grad max@k``.

    Args:
        rewards: ``[..., n]`` rewards, one group per row (a tensor, array or nested list). NaN (or ``None``)
            marks a completion no reward function could score: it is left out of its group's estimate and
            gets ``A_i = 0``; a group left with ``n'`` scored completions uses ``k' = min(k, n' - min_others)``
            (``k' = n'`` for ``grpo_passk``) and gets all zeros when ``k' < 1``, or when ``n' < 2`` for the
            estimators with a baseline.
        k: ``1 <= k <= n``; ``k <= n-1`` for ``"sloo"`` and ``"l2o"``; ``k = n`` for ``"grpo_passk"``.
        estimator: a name in :data:`ESTIMATORS`.

    Returns:
        Tensor of the shape of ``rewards``, in its floating dtype (computed in float64).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}")
    spec = ESTIMATORS[estimator]
    g, out_dtype = _as_float64(rewards)
    n = _check_rewards(g)
    k = _check_k(k)
    if k > n - spec.min_others:
        need = "n-1" if spec.min_others else "n"
        raise ValueError(f"k={k} is too large for estimator {estimator!r} with n={n}: it needs k <= {need}")
    if spec.k_is_n and k != n:
        raise ValueError(f"estimator {estimator!r} is defined for k = n only (the whole group): got k={k}, n={n}")
    if spec.binary_only and not is_binary(g):
        raise ValueError(
            f"estimator {estimator!r} is defined for binary (0/1) rewards only; these rewards are not all 0 or 1 "
            "(use 'sloo_minus_one' for continuous rewards)"
        )

    g_sorted, ranks, n_valid, order = _sort_groups(g)
    kk = torch.clamp(torch.full_like(n_valid, float(k)), max=n_valid - spec.min_others)
    usable = (kk >= 1) & (n_valid >= (2 if spec.needs_others else 1))
    kk = torch.where(usable, kk, 1.0)  # safe values for groups that get zeros anyway
    n_safe = torch.where(usable, n_valid, 2.0)
    out = spec.fn(g_sorted, ranks, n_safe, kk).gather(-1, _tie_block_starts(g_sorted, ranks))
    out = torch.where(usable & (ranks >= 1), out, 0.0)
    # Back from sorted order; tied rewards get equal values, so which tied slot is which does not matter.
    out = torch.empty_like(out).scatter_(-1, order, out)
    return out.to(out_dtype)
